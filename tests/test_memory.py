import sys

import pytest
from autograd_memory import saved_activation_bytes
import torch
import torch.nn as nn

from unet_lessons.memory import MemoryEstimate, estimate_memory, measure_peak_memory
from unet_lessons.models import UNet, UNetPlusPlus

F32 = 4


def test_a_tiny_network_by_hand():
    model = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(inplace=True))
    estimate = estimate_memory(model, (1, 8, 8, 8), batch_size=2)
    voxels = 2 * 8**3
    assert estimate.parameters == (4 * 27 + 4) * F32 and estimate.gradients == estimate.parameters
    assert estimate.optimizer_state == 2 * estimate.parameters  # Adam: two averages per weight
    # The conv keeps its input; the ReLU its output; the loss one logit-sized tensor.
    assert estimate.activations == voxels * 1 * F32 + voxels * 4 * F32 + voxels * 4 * F32
    assert estimate.workspace == voxels * 4 * F32 * 2  # the ReLU's output and input gradients
    assert estimate.total == sum([estimate.parameters, estimate.gradients, estimate.optimizer_state,
                                  estimate.activations, estimate.workspace])
    assert estimate_memory(model, (1, 8, 8, 8), optimizer="sgd").optimizer_state == 0
    assert "total" in str(estimate) and "MiB" in estimate.table()


@pytest.mark.parametrize("spatial_dims, nested", [(2, False), (3, False), (2, True)])
def test_the_rules_agree_with_what_autograd_saves(spatial_dims, nested):
    torch.manual_seed(0)
    if nested:  # UNet++: concatenations everywhere, and one output per head
        model = UNetPlusPlus(1, 3, spatial_dims=spatial_dims, features=(4, 8, 16), deep_supervision=True).train()
    else:
        model = UNet(1, 3, spatial_dims=spatial_dims, features=(4, 8, 16), channel_plan="unet3d").train()
    x = torch.randn(2, 1, *[16] * spatial_dims)
    saved = saved_activation_bytes(model, x)
    estimate = estimate_memory(model, (1, *[16] * spatial_dims), batch_size=2, loss_tensors=0)
    assert estimate.activations == pytest.approx(saved, rel=0.1)


def test_activations_scale_with_batch_and_voxels():
    model = UNet(1, 2, spatial_dims=3, features=(4, 8))
    one = estimate_memory(model, (1, 16, 16, 16), batch_size=1)
    assert estimate_memory(model, (1, 16, 16, 16), batch_size=3).activations == 3 * one.activations
    assert estimate_memory(model, (1, 32, 32, 32), batch_size=1).activations == 8 * one.activations
    flat = estimate_memory(UNet(1, 2, spatial_dims=2, features=(4, 8)), (1, 16, 16), batch_size=1)
    # A 16³ volume has 16 times the voxels of a 16² image at full resolution (8 times at half).
    assert 8 * flat.activations < one.activations < 16 * flat.activations


def test_a_dense_layer_keeps_its_input():
    # (B, 64) in, (B, 10) out: the input is saved for the weight gradient, the output kept by the loss.
    estimate = estimate_memory(nn.Linear(64, 10), (64,), batch_size=3)
    assert estimate.activations == 4 * 3 * (64 + 10)
    assert estimate.parameters == 4 * (64 * 10 + 10)


def test_bad_input_and_unknown_layers_are_refused():
    with pytest.raises(ValueError, match="5-D input"):
        estimate_memory(UNet(1, 2, spatial_dims=3, features=(4, 8)), (1, 16, 16))
    with pytest.raises(ValueError, match="Hardswish"):
        estimate_memory(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Hardswish()), (1, 8, 8))
    with pytest.raises(ValueError, match="optimizer"):
        estimate_memory(nn.Conv2d(1, 2, 3), (1, 8, 8), optimizer="lion")
    with pytest.raises(ValueError, match="module:Class"):
        measure_peak_memory(("UNet", {}), (1, 8, 8))
    with pytest.raises(ValueError, match="method"):
        measure_peak_memory(("unet_lessons.models:UNet", {}), (1, 8, 8), method="psutil")


def test_the_estimate_is_within_30_percent_of_a_measurement():
    kwargs = dict(in_channels=1, out_channels=3, spatial_dims=3, features=(16, 32, 64), channel_plan="unet3d")
    estimate = estimate_memory(UNet(**kwargs), (1, 48, 48, 48), batch_size=2)
    measured = measure_peak_memory(("unet_lessons.models:UNet", kwargs), (1, 48, 48, 48), batch_size=2)
    assert isinstance(estimate, MemoryEstimate)
    assert 0.7 < estimate.total / measured < 1.3


def test_deep_supervision_outputs_are_counted_and_measured():
    kwargs = dict(in_channels=1, out_channels=2, features=(4, 8, 16), deep_supervision=True)
    single = estimate_memory(UNetPlusPlus(**{**kwargs, "deep_supervision": False}), (1, 32, 32), batch_size=2)
    supervised = estimate_memory(UNetPlusPlus(**kwargs), (1, 32, 32), batch_size=2)
    logit_bytes = 2 * 2 * 32 * 32 * F32
    # Depth 2: one more head, on X^{0,1}. Its convolution keeps X^{0,1}, which the last ReLU of that node
    # keeps already, so only the loss's logit-sized tensor for the new head adds to the count.
    assert supervised.activations - single.activations == logit_bytes
    assert measure_peak_memory(("unet_lessons.models:UNetPlusPlus", kwargs), (1, 32, 32), batch_size=2) > 0


def test_a_failing_child_process_reports_its_error():
    with pytest.raises(RuntimeError, match="NoSuchNet"):
        measure_peak_memory(("unet_lessons.models:NoSuchNet", {}), (1, 8, 8))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="compares with Linux's resettable peak")
def test_getrusage_agrees_with_the_resettable_peak():
    """ru_maxrss cannot be reset, so it reports the rise above the warm-up's peak: a few MiB low at most."""
    spec = ("unet_lessons.models:UNet", dict(in_channels=1, out_channels=3, spatial_dims=3, features=(8, 16, 32),
                                            channel_plan="unet3d"))
    proc = measure_peak_memory(spec, (1, 32, 32, 32), batch_size=2, method="proc")
    rusage = measure_peak_memory(spec, (1, 32, 32, 32), batch_size=2, method="getrusage")
    assert proc - 8 * 2**20 < rusage <= proc + 2**20


def test_no_resource_module_gives_none(tmp_path, monkeypatch):
    """Windows has no resource module: the measurement says so instead of failing."""
    (tmp_path / "resource.py").write_text("raise ImportError('no resource module here')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    spec = ("unet_lessons.models:UNet", dict(in_channels=1, out_channels=2, features=(2, 4)))
    assert measure_peak_memory(spec, (1, 8, 8), method="getrusage") is None
