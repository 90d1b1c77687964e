"""Stored and replayed training runs (``UNET_LESSONS_FIT_CACHE``): a replay leaves exactly the state a real run leaves."""

import subprocess
import sys

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
    after = {"next_batch": next(iter(sampler)), "torch": torch.rand(3), "numpy": np.random.rand(3)}
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


def test_off_without_the_environment_variable(monkeypatch, tmp_path):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    assert FitCache.from_environment() is None
    model, sampler = _setup()
    fit(model, sampler, DiceCELoss(), TrainConfig(steps=2, progress=False, collapse_check=False))
    assert not list(tmp_path.glob("*"))


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
