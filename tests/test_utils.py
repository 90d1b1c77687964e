import random

import numpy as np
import pytest
import torch
import torch.nn as nn

from unet_lessons.models import UNet
from unet_lessons.utils import (
    count_parameters,
    format_shape_table,
    get_device,
    load_state_by_order,
    mirror_pad,
    seed_everything,
    show_source,
    trace_shapes,
)


def test_seed_everything_repeats_every_generator():
    seed_everything(3)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(3)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_seed_everything_fixes_threads_from_environment(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("UNET_LESSONS_NUM_THREADS", "1")
    seed_everything(0)
    assert torch.get_num_threads() == 1
    torch.set_num_threads(before)


def test_get_device_honours_preference(monkeypatch):
    assert get_device("cpu").type == "cpu"
    monkeypatch.setenv("UNET_LESSONS_DEVICE", "cpu")
    assert get_device().type == "cpu"


def test_trace_shapes_on_meta_tensor():
    model = UNet(1, 2, base_features=4, depth=2)
    records = trace_shapes(model.to("meta"), torch.empty(1, 1, 32, 32, device="meta"))
    names = [r.name for r in records]
    assert names == ["inc", "downs.0", "downs.1", "ups.0", "ups.1", "head"]
    assert records[-1].shape == (1, 2, 32, 32)
    table = format_shape_table(records)
    assert "(1, 16, 8, 8)" in table and table.splitlines()[0].startswith("layer")


def test_trace_shapes_deeper_levels():
    model = UNet(1, 2, base_features=4, depth=1)
    records = trace_shapes(model, torch.randn(1, 1, 8, 8), depth=2)
    assert ("downs.0.pool", (1, 4, 4, 4)) in [(r.name, r.shape) for r in records]
    assert ("downs.0", (1, 8, 4, 4)) in [(r.name, r.shape) for r in records]


def test_show_source_returns_the_code():
    code = show_source(count_parameters)
    text = getattr(code, "data", code)
    assert "def count_parameters" in text


def test_load_state_by_order_copies_and_checks():
    a, b = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)), nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    load_state_by_order(a, b)
    x = torch.randn(5, 3)
    assert torch.equal(a(x), b(x))
    with pytest.raises(ValueError, match="does not line up"):
        load_state_by_order(nn.Linear(3, 4), nn.Linear(4, 3))
    with pytest.raises(ValueError, match="tensors"):
        load_state_by_order(a, nn.Linear(3, 4))


def test_mirror_pad_matches_numpy_reflect():
    array = np.arange(2 * 5 * 7).reshape(2, 5, 7)
    padded = mirror_pad(torch.from_numpy(array), [(3, 3), (3, 3)], first_axis=1)
    np.testing.assert_array_equal(padded.numpy(), np.pad(array, ((0, 0), (3, 3), (3, 3)), mode="reflect"))
    # Longer than the axis: keeps folding back and forth, as numpy does.
    padded = mirror_pad(torch.from_numpy(array), [(11, 2), (0, 20)], first_axis=1)
    np.testing.assert_array_equal(padded.numpy(), np.pad(array, ((0, 0), (11, 2), (0, 20)), mode="reflect"))


def test_mirror_pad_refuses_a_length_one_axis():
    with pytest.raises(ValueError, match="length 1"):
        mirror_pad(torch.zeros(1, 1, 4), [(1, 1), (0, 0)], first_axis=1)
