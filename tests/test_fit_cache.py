"""Stored and replayed training runs (``UNET_LESSONS_FIT_CACHE``): a replay leaves exactly the state a real run leaves."""

import functools
import random
import subprocess
import sys
import textwrap

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from unet_lessons.data import PatchSampler
from unet_lessons.fit_cache import CACHE_ENV, EVENTS_LOG, MODE_ENV, FitCache, fingerprint_object, random_states
from unet_lessons.losses import DiceCELoss, SoftDiceLoss
from unet_lessons.train import TrainConfig, fit
from unet_lessons.utils import seed_everything

STEPS = 6


class CountingLoss(nn.Module):
    """Dice + CE that counts its calls: a replayed run must not call it at all."""

    def __init__(self):
        super().__init__()
        self.loss, self.calls = DiceCELoss(), 0

    def forward(self, logits, target):
        self.calls += 1
        random.random()  # so that training moves Python's generator too
        return self.loss(logits, target)


def _setup(seed=0):
    """A seeded model with dropout (so training draws from torch's global generator) and a sampler."""
    seed_everything(seed)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Dropout2d(0.3), nn.Conv2d(8, 2, 1))
    generator = torch.Generator().manual_seed(1)
    labels = (torch.rand(4, 32, 32, generator=generator) > 0.5).long()
    images = labels.float() + 0.5 * torch.randn(4, 32, 32, generator=generator)
    sampler = PatchSampler(images.numpy(), labels.numpy(), 16, 2, augment=True, seed=3)
    return model, sampler


def _run(monkeypatch, directory, mode, seed=0):
    monkeypatch.setenv(CACHE_ENV, str(directory))
    monkeypatch.setenv(MODE_ENV, mode)
    model, sampler = _setup(seed)
    loss = CountingLoss()
    history = fit(model, sampler, loss, TrainConfig(steps=STEPS, lr=1e-2, progress=False, collapse_check=False))
    after = {"next_batch": next(iter(sampler)), "torch": torch.rand(3), "numpy": np.random.rand(3),
             "python": random.random()}
    return model, history, loss.calls, after


def test_a_replay_leaves_the_state_a_real_run_leaves(monkeypatch, tmp_path):
    trained, history, calls, after = _run(monkeypatch, tmp_path, "write")
    assert calls == STEPS and len(list(tmp_path.glob("*.pt"))) == 1
    replayed, replay_history, replay_calls, replay_after = _run(monkeypatch, tmp_path, "read")
    assert replay_calls == 0  # nothing was trained
    for (name, a), (_, b) in zip(trained.state_dict().items(), replayed.state_dict().items()):
        assert torch.equal(a, b), name
    assert replay_history == history and not replayed.training
    assert [line.split()[0] for line in (tmp_path / EVENTS_LOG).read_text().splitlines()] == ["stored", "replayed"]
    # The sampler's stream and the global generators are where the real run left them.
    assert all(torch.equal(a, b) for a, b in zip(after["next_batch"], replay_after["next_batch"]))
    assert torch.equal(after["torch"], replay_after["torch"])
    np.testing.assert_array_equal(after["numpy"], replay_after["numpy"])
    assert after["python"] == replay_after["python"]


def test_a_different_start_trains_for_real(monkeypatch, tmp_path):
    _run(monkeypatch, tmp_path, "write", seed=0)
    _, _, calls, _ = _run(monkeypatch, tmp_path, "read", seed=1)  # other starting weights
    assert calls == STEPS


def test_a_different_loss_is_a_different_run(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    keys = []
    for weight in (None, torch.tensor([1.0, 5.0])):
        model, sampler = _setup()
        cache = FitCache(tmp_path, "read")
        keys.append(cache.fingerprint(model, nn.CrossEntropyLoss(weight=weight), TrainConfig(steps=STEPS), None,
                                      random_states(), next(iter(sampler))))
    assert keys[0] != keys[1]


def test_read_mode_never_writes_and_write_mode_never_replays(monkeypatch, tmp_path):
    _, _, calls, _ = _run(monkeypatch, tmp_path, "read")
    assert calls == STEPS and not list(tmp_path.glob("*.pt"))
    _run(monkeypatch, tmp_path, "write")
    _, _, calls, _ = _run(monkeypatch, tmp_path, "write")
    assert calls == STEPS


def test_a_broken_stored_run_is_trained_again_with_a_warning(monkeypatch, tmp_path):
    _run(monkeypatch, tmp_path, "write")
    (stored,) = tmp_path.glob("*.pt")
    stored.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="could not be read"):
        _, _, calls, _ = _run(monkeypatch, tmp_path, "read")
    assert calls == STEPS


def test_off_and_write_mode_train_alike(monkeypatch, tmp_path):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    assert FitCache.from_environment() is None
    model, sampler = _setup()
    history = fit(model, sampler, CountingLoss(), TrainConfig(steps=STEPS, lr=1e-2, progress=False, collapse_check=False))
    after = (next(iter(sampler)), torch.rand(3), np.random.rand(3), random.random())
    written, written_history, _, written_after = _run(monkeypatch, tmp_path, "write")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), written.state_dict().values()))
    assert {k: v for k, v in history.items() if k != "seconds"} == \
        {k: v for k, v in written_history.items() if k != "seconds"}
    assert all(torch.equal(a, b) for a, b in zip(after[0], written_after["next_batch"]))
    assert torch.equal(after[1], written_after["torch"]) and after[3] == written_after["python"]
    np.testing.assert_array_equal(after[2], written_after["numpy"])


def _key(model=None, loss=None, config=None, val_fn=None, sampler_seed=3, torch_seed=0):
    seed_everything(0)
    default_model, _ = _setup()
    torch.manual_seed(torch_seed)
    images, labels = np.zeros((2, 16, 16), np.float32), np.zeros((2, 16, 16), np.int64)
    labels[:, 4:9, 4:9] = 1
    first = next(iter(PatchSampler(images + labels, labels, 8, 2, augment=True, seed=sampler_seed)))
    return FitCache("unused", "read").fingerprint(model or default_model, loss or nn.CrossEntropyLoss(),
                                                  config or TrainConfig(steps=STEPS), val_fn, random_states(), first)


def _model(act=nn.ReLU, p=0.3, frozen=False):
    seed_everything(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), act(), nn.Dropout2d(p), nn.Conv2d(8, 2, 1))
    model[0].weight.requires_grad_(not frozen)
    return model


def _scaled(scale):
    return lambda logits, target: scale * nn.functional.cross_entropy(logits, target)


@pytest.mark.parametrize("change", [
    dict(torch_seed=1), dict(sampler_seed=4), dict(config=TrainConfig(steps=STEPS, lr=2e-3)),
    dict(model=_model(act=nn.LeakyReLU)), dict(model=_model(p=0.1)), dict(model=_model(frozen=True)),
    dict(loss=_scaled(2.0)), dict(loss=functools.partial(nn.functional.cross_entropy, label_smoothing=0.1)),
    dict(loss=nn.CrossEntropyLoss(weight=torch.tensor([1.0, 5.0]))), dict(val_fn=lambda model: {"a": 1}),
], ids=["torch-state", "first-batch", "lr", "activation", "dropout", "frozen", "lambda", "partial", "weights",
        "val_fn"])
def test_every_part_of_the_run_is_in_its_key(change):
    base = dict(model=_model(), loss=_scaled(1.0), val_fn=lambda model: {"b": 2})
    assert _key(**base) == _key(**base)
    assert _key(**{**base, **change}) != _key(**base)


class _WeightedLoss:
    def __init__(self, weights):
        self.weights = weights

    def __call__(self, logits, target):
        return nn.functional.cross_entropy(logits, target, weight=torch.as_tensor(self.weights))


def test_what_a_loss_holds_is_in_its_fingerprint():
    assert fingerprint_object(_scaled(1.0)) == fingerprint_object(_scaled(1.0))
    assert fingerprint_object(_scaled(1.0)) != fingerprint_object(_scaled(2.0))  # the closed-over value
    smooth = functools.partial(nn.functional.cross_entropy, label_smoothing=0.1)
    assert fingerprint_object(smooth) != fingerprint_object(functools.partial(nn.functional.cross_entropy))
    assert fingerprint_object(_WeightedLoss(np.array([1.0, 5.0]))) != fingerprint_object(_WeightedLoss(np.array([1.0, 1.0])))
    assert fingerprint_object(nn.CrossEntropyLoss()) != fingerprint_object(nn.CrossEntropyLoss(ignore_index=3))


def test_the_key_is_the_same_in_another_process():
    # Other hash seeds and hooks made first (their handle ids come from a counter of the whole process).
    script = textwrap.dedent("""
        import sys, torch, torch.nn as nn
        sys.path.insert(0, %r)
        import test_fit_cache as t
        if sys.argv[1] == "hooks":
            for _ in range(3):
                nn.Linear(1, 1).register_forward_hook(lambda *a: None).remove()
        loss = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 5.0]))
        loss.register_forward_hook(lambda *a: None)
        print(t._key(loss=loss, val_fn=lambda model: {"x": 1}))
    """ % str(Path(__file__).parent))
    printed = {subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout
               for mode, seed in [("plain", "0"), ("hooks", "1")]}
    assert len(printed) == 1 and len(printed.pop().strip()) == 64


def test_a_model_that_cannot_be_fingerprinted_trains_with_a_warning(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    monkeypatch.setenv(MODE_ENV, "write")
    _, sampler = _setup()
    model = nn.Sequential(nn.LazyConv2d(2, 3, padding=1))  # no weights until the first batch
    with pytest.warns(UserWarning, match="cannot be stored or replayed"):
        fit(model, sampler, nn.CrossEntropyLoss(), TrainConfig(steps=2, progress=False, collapse_check=False))
    assert not list(tmp_path.glob("*.pt"))


def test_stored_weights_that_do_not_fit_are_trained_again(monkeypatch, tmp_path):
    _run(monkeypatch, tmp_path, "write")
    (stored,) = tmp_path.glob("*.pt")
    record = torch.load(stored, weights_only=False)
    record["state_dict"] = {k: v[:1] for k, v in record["state_dict"].items()}
    torch.save(record, stored)
    with pytest.warns(UserWarning, match="do not fit the model"):
        _, _, calls, _ = _run(monkeypatch, tmp_path, "read")
    assert calls == STEPS


def test_an_unknown_mode_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    monkeypatch.setenv(MODE_ENV, "readwrite")
    with pytest.raises(ValueError, match="read.*write"):
        FitCache.from_environment()


def test_a_loss_holding_a_tensor_has_the_same_fingerprint_in_every_process():
    # A pickled tensor differs from process to process, which once made every run with a class-weighted
    # loss miss its stored run in the browser tests.
    script = ("import torch; from unet_lessons.fit_cache import fingerprint_object; "
              "from unet_lessons.losses import SoftDiceLoss; "
              "print(fingerprint_object(torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, 5.0]))), "
              "fingerprint_object(SoftDiceLoss(squared_pred=True, include_background=False)))")
    printed = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
               for _ in range(2)}
    assert len(printed) == 1
    here = (fingerprint_object(nn.CrossEntropyLoss(weight=torch.tensor([1.0, 5.0]))),
            fingerprint_object(SoftDiceLoss(squared_pred=True, include_background=False)))
    assert printed == {" ".join(here) + "\n"}
    assert fingerprint_object(nn.CrossEntropyLoss(weight=torch.tensor([1.0, 5.0]))) != \
        fingerprint_object(nn.CrossEntropyLoss(weight=torch.tensor([1.0, 4.0])))
    assert fingerprint_object(nn.CrossEntropyLoss()) != fingerprint_object(nn.CrossEntropyLoss(ignore_index=3))
