"""Saved training runs (unet_lessons.runs): trained once, reused only when the cell matches."""

import numpy as np
import pytest
import torch

from unet_lessons import runs
from unet_lessons.data import PatchSampler
from unet_lessons.losses import DiceCELoss
from unet_lessons.models import UNet
from unet_lessons.train import TrainConfig, fit


@pytest.fixture
def run_dir(tmp_path):
    yield tmp_path
    runs.use_saved_runs("off")  # leave the session as the other tests expect it


def _sampler(seed=0):
    g = np.random.default_rng(seed)
    labels = (g.random((3, 32, 32)) > 0.6).astype(np.int64)
    images = labels + 0.5 * g.standard_normal((3, 32, 32))
    return PatchSampler(images, labels, patch_size=16, batch_size=2, augment=False, seed=seed)


def _train(run, steps=4, lr=1e-3, width=4, loss=None):
    torch.manual_seed(0)
    model, sampler = UNet(1, 2, base_features=width, depth=1), _sampler()
    history = fit(model, sampler, loss or DiceCELoss(), TrainConfig(steps=steps, lr=lr, progress=False, device="cpu", collapse_check=False),
                  run=run)
    return model, sampler, history


def test_off_trains_saves_nothing_and_prints_nothing(run_dir, capsys):
    runs.use_saved_runs("off", run_dir)
    _train("a")
    assert not list(run_dir.iterdir()) and capsys.readouterr().out == ""


def test_reuse_trains_and_saves_first_then_loads_the_same_weights_and_states(run_dir, capsys):
    runs.use_saved_runs("reuse", run_dir)
    trained, trained_sampler, trained_history = _train("a")
    after_training = (torch.rand(3), np.random.rand(), next(trained_sampler)[0])
    assert "No saved run 'a' yet" in capsys.readouterr().out
    loaded, loaded_sampler, loaded_history = _train("a")
    assert "Loaded saved run 'a'" in capsys.readouterr().out
    assert loaded_history == trained_history
    for (k, v), w in zip(trained.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(v, w), k
    # Later cells draw the same numbers and batches as after the real run.
    after_loading = (torch.rand(3), np.random.rand(), next(loaded_sampler)[0])
    assert torch.equal(after_training[0], after_loading[0]) and after_training[1] == after_loading[1]
    assert torch.equal(after_training[2], after_loading[2])


@pytest.mark.parametrize("change, reason", [
    (dict(steps=5), "TrainConfig differs (steps=4 saved, 5 now)"),
    (dict(lr=1e-2), "TrainConfig differs (lr=0.001 saved, 0.01 now)"),
    (dict(width=6), "model class or arguments differ"),
    (dict(loss=DiceCELoss(lambda_ce=0.5)), "loss differ"),
])
def test_a_run_that_does_not_match_the_cell_is_trained_again_and_says_why(run_dir, capsys, change, reason):
    runs.use_saved_runs("reuse", run_dir)
    _train("a")
    capsys.readouterr()
    _train("a", **change)
    out = capsys.readouterr().out
    assert reason in out and "training it again" in out and "Trained run 'a'" in out


def test_refresh_always_trains_and_replaces(run_dir, capsys):
    runs.use_saved_runs("refresh", run_dir)
    _train("a")
    first = (run_dir / "a.pt").stat().st_mtime_ns
    _train("a")
    out = capsys.readouterr().out
    assert out.count("Trained run 'a'") == 2 and "Loaded" not in out
    assert (run_dir / "a.pt").stat().st_mtime_ns >= first


def test_a_corrupt_saved_run_is_retrained_with_a_notice(run_dir, capsys):
    runs.use_saved_runs("reuse", run_dir)
    (run_dir / "a.pt").write_bytes(b"not a torch file")
    _train("a")
    out = capsys.readouterr().out
    assert "cannot be read" in out and "Trained run 'a'" in out


def test_the_mode_comes_from_the_environment_and_bad_values_are_named(run_dir, monkeypatch):
    monkeypatch.setenv("UNET_LESSONS_RUNS", "reuse")
    assert runs.use_saved_runs() == "reuse"
    monkeypatch.setenv("UNET_LESSONS_RUNS", "replay")
    with pytest.raises(ValueError, match=r"one of \('off', 'reuse', 'refresh'\); got 'replay'.*UNET_LESSONS_RUNS"):
        runs.use_saved_runs()
    monkeypatch.setenv("UNET_LESSONS_RUN_DIR", str(run_dir / "elsewhere"))
    runs.use_saved_runs("off")
    assert runs.run_directory() == run_dir / "elsewhere"


def test_run_names_are_plain_file_names(run_dir):
    runs.use_saved_runs("refresh", run_dir)
    with pytest.raises(ValueError, match="plain file name"):
        _train("../escape")


def test_the_default_folder_is_outside_the_repository(monkeypatch, tmp_path):
    monkeypatch.delenv("UNET_LESSONS_RUN_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    runs.use_saved_runs("off")
    assert runs.run_directory() == tmp_path / "unet-lessons" / "runs"


def test_a_run_with_monai_augmentation_and_region_targets_loads(run_dir, capsys):
    # Lesson 06: the sampler's state holds MONAI's NumPy random states; the saved file must still load
    # with torch.load(weights_only=True), or every browser run would silently train again.
    from monai.transforms import Compose, RandFlipd

    from unet_lessons.data import make_brats_volume
    from unet_lessons.losses import RegionDiceBCELoss
    from unet_lessons.models import NoNewNet
    from unet_lessons.targets import BRATS_REGION_CLASSES

    image, label = make_brats_volume(16, seed=0)

    def train():
        torch.manual_seed(0)
        sampler = PatchSampler(image[None], label[None], patch_size=16, batch_size=1, augment=False, mean=0.0, std=1.0,
                               transform=Compose([RandFlipd(["image", "label"], prob=0.5, spatial_axis=0)]),
                               regions=BRATS_REGION_CLASSES)
        return fit(NoNewNet(4, 3, width=2, depth=1), sampler, RegionDiceBCELoss(),
                   TrainConfig(steps=2, progress=False, device="cpu", collapse_check=False), run="regions")

    runs.use_saved_runs("refresh", run_dir)
    trained = train()
    runs.use_saved_runs("reuse", run_dir)
    capsys.readouterr()
    assert train() == trained and "Loaded saved run 'regions'" in capsys.readouterr().out
