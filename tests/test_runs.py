"""Saved training runs (unet_lessons.runs): trained once, reused only when the cell would train the same."""

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unet_lessons import runs, train
from unet_lessons.data import PatchSampler
from unet_lessons.losses import DiceCELoss
from unet_lessons.models import build_model
from unet_lessons.train import TrainConfig, fit
from unet_lessons.utils import seed_everything


@pytest.fixture
def run_dir(tmp_path):
    yield tmp_path
    runs.use_saved_runs("off")  # leave the session as the other tests expect it


def _sampler(seed=0, noise=0.5, patch_size=16):
    g = np.random.default_rng(0)
    labels = (g.random((3, 32, 32)) > 0.6).astype(np.int64)
    images = labels + noise * g.standard_normal((3, 32, 32))
    return PatchSampler(images, labels, patch_size=patch_size, batch_size=2, augment=False, seed=seed)


def _scaled_cross_entropy(scale):
    """A loss that closes over a constant, as a lesson's lambda would."""
    return lambda logits, target: scale * F.cross_entropy(logits, target)


def _drawing_cross_entropy():
    """A loss that draws from torch's, Python's and NumPy's global generators (as dropout or a noisy loss would)."""
    return lambda logits, target: F.cross_entropy(logits, target) * (
        1 + 0 * torch.rand(()).item() + 0 * random.random() + 0 * np.random.rand())


def _validation(kind="mean"):
    """A new validation function on every call, closing over a new (equal) probe tensor."""
    probe = torch.linspace(-1, 1, 256).reshape(1, 1, 16, 16)
    if kind == "mean":
        return lambda net: {"mean logit": net(probe).mean().item()}
    return lambda net: {"max logit": net(probe).max().item()}


def _cell(run, *, seed=0, noise=0.5, patch_size=16, sampler_seed=0, loss=None, val_fn="mean", steps=4, lr=1e-3,
          width=2):
    """One training cell, built from scratch as a re-run cell would build it: new, equal objects."""
    seed_everything(seed)
    model = build_model("unet", in_channels=1, out_channels=2, spatial_dims=2, width=width, depth=1)
    sampler = _sampler(sampler_seed, noise, patch_size)
    if loss is None or loss == "drawing":
        loss = DiceCELoss() if loss is None else _drawing_cross_entropy()
    elif isinstance(loss, tuple):
        loss = _scaled_cross_entropy(loss[1])
    history = fit(model, sampler, loss, TrainConfig(steps=steps, lr=lr, progress=False, device="cpu",
                                                    collapse_check=False),
                  val_fn=_validation(val_fn), run=run)
    return model, sampler, history


def _random_draws(sampler):
    """What later cells draw: from every global generator and from the batch source."""
    return torch.rand(3), np.random.rand(), random.random(), next(sampler)[0]


def _numbers(history):
    """A history without its wall time, the one entry that differs from run to run."""
    return {k: v for k, v in history.items() if k != "seconds"}


def _assert_same_draws(a, b):
    assert torch.equal(a[0], b[0]) and a[1] == b[1] and a[2] == b[2] and torch.equal(a[3], b[3])


def test_off_trains_saves_nothing_and_prints_nothing(run_dir, capsys):
    runs.use_saved_runs("off", run_dir)
    _cell("a")
    assert not list(run_dir.iterdir()) and capsys.readouterr().out == ""


def test_the_identical_cell_rebuilt_from_scratch_loads_the_same_weights_history_and_states(run_dir, capsys):
    runs.use_saved_runs("reuse", run_dir)
    trained, trained_sampler, trained_history = _cell("a", loss="drawing")
    after_training = _random_draws(trained_sampler)
    assert "No saved run 'a' yet" in capsys.readouterr().out
    loaded, loaded_sampler, loaded_history = _cell("a", loss="drawing")  # new lambdas, new equal tensors
    assert "Loaded saved run 'a'" in capsys.readouterr().out
    assert loaded_history == trained_history and "val_mean logit" in loaded_history
    for (k, v), w in zip(trained.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(v, w), k
    # Later cells draw the same numbers (torch, NumPy, Python) and batches as after the real run.
    _assert_same_draws(after_training, _random_draws(loaded_sampler))


@pytest.mark.parametrize("before, after, reason", [
    ({}, dict(noise=0.8), "the first batch differs: the data or the sampler changed"),
    ({}, dict(patch_size=8), "the first batch differs: the data or the sampler changed"),
    ({}, dict(seed=1), "the initial weights differ: a different seed before the model was built"),
    ({}, dict(val_fn="max"), "the validation function differs"),
    (dict(loss=("scaled", 1.0)), dict(loss=("scaled", 2.0)), "the loss differs"),
    ({}, dict(loss=DiceCELoss(lambda_ce=0.5)), "the loss differs"),
    ({}, dict(sampler_seed=1), "the first batch differs: the data or the sampler changed"),
    ({}, dict(steps=5), "TrainConfig differs (steps=4 saved, 5 now)"),
    ({}, dict(lr=1e-2), "TrainConfig differs (lr=0.001 saved, 0.01 now)"),
    ({}, dict(width=3), "the model class or arguments differ"),
], ids=["noise", "patch size", "seed before the model", "validation", "loss constant", "loss settings",
        "sampler seed", "steps", "lr", "width"])
def test_a_changed_cell_is_trained_again_and_says_why(run_dir, capsys, before, after, reason):
    runs.use_saved_runs("reuse", run_dir)
    _cell("a", **before)
    capsys.readouterr()
    _cell("a", **{**before, **after})  # a changed sampler seed retrains, it does not raise
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Saved run 'a' does not fit this cell (") and reason in lines[0], lines
    assert lines[0].endswith("training it again.") and lines[1].startswith("Trained run 'a'")


def test_an_edited_package_source_retrains(run_dir, capsys, monkeypatch):
    runs.use_saved_runs("reuse", run_dir)
    _cell("a")
    capsys.readouterr()
    monkeypatch.setattr(runs, "package_digest", lambda: "another checkout")
    _cell("a")
    out = capsys.readouterr().out
    assert "the package's source files changed" in out and "training it again" in out


def test_a_mismatch_loads_nothing_and_trains_exactly_as_without_saved_runs(run_dir, monkeypatch):
    """Everything is compared before anything is loaded: training starts from the fresh initial weights,
    random states and batch source, and gives the numbers it gives with saved runs off."""
    starts = []
    make_optimizer, next_batch = train._optimizer, train._next_batch

    def note_the_model_and_random_states(model, config):  # fit makes its optimizer once the run was not loaded
        starts.append({"weights": {k: v.clone() for k, v in model.state_dict().items()},
                       "torch": torch.get_rng_state(), "numpy": np.random.get_state()[1].copy(),
                       "python": random.getstate()})
        return make_optimizer(model, config)

    def note_the_batch_source(stream, batches):
        starts[-1].setdefault("sampler", batches.generator.get_state())  # before the first draw
        return next_batch(stream, batches)

    monkeypatch.setattr(train, "_optimizer", note_the_model_and_random_states)
    monkeypatch.setattr(train, "_next_batch", note_the_batch_source)
    runs.use_saved_runs("off", run_dir)
    *_, without_saved_runs = _cell("a", noise=0.8)
    runs.use_saved_runs("reuse", run_dir)
    _cell("a")  # saved, for other data
    *_, after_a_mismatch = _cell("a", noise=0.8)
    fresh, mismatched = starts[0], starts[-1]
    for (name, weight), other in zip(fresh["weights"].items(), mismatched["weights"].values()):
        assert torch.equal(weight, other), f"{name} was loaded from the saved run although the cell differs"
    assert torch.equal(fresh["torch"], mismatched["torch"]) and np.array_equal(fresh["numpy"], mismatched["numpy"])
    assert fresh["python"] == mismatched["python"] and torch.equal(fresh["sampler"], mismatched["sampler"])
    assert _numbers(after_a_mismatch) == _numbers(without_saved_runs)


def _one_shot(noise):
    """A generator (drawing its first batch uses it up) that draws from torch's global generator."""
    labels = (torch.arange(256).reshape(1, 16, 16) % 3 == 0).long().repeat(2, 1, 1)
    while True:
        yield labels[:, None].float() + noise * torch.randn(2, 1, 16, 16), labels


def _loader():
    """A finite, shuffled DataLoader: each epoch draws its order from torch's global generator."""
    g = torch.Generator().manual_seed(0)
    labels = (torch.rand(6, 16, 16, generator=g) > 0.5).long()
    images = labels[:, None].float() + 0.5 * torch.randn(6, 1, 16, 16, generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=2, shuffle=True)


def _sampler_with_monai_intensities():
    """A sampler whose MONAI transforms keep random states inside other transforms (lesson 07's augmentation)."""
    from monai.transforms import Compose, RandScaleIntensityd, RandShiftIntensityd

    sampler = _sampler()
    sampler.transform = Compose([RandScaleIntensityd(["image"], factors=0.1, prob=1.0),
                                 RandShiftIntensityd(["image"], offsets=0.1, prob=1.0)])
    sampler.transform.set_random_state(seed=0)
    return sampler


@pytest.mark.parametrize("make_batches", [lambda: _sampler(), lambda: _one_shot(0.5), _loader,
                                          lambda: [(_sampler().images[:2], _sampler().labels[:2])],
                                          _sampler_with_monai_intensities],
                         ids=["sampler", "one-shot generator", "shuffled loader", "list", "sampler with MONAI transforms"])
def test_training_numbers_are_the_same_in_every_mode(run_dir, make_batches):
    histories = []
    for mode in ("off", "refresh", "reuse", "reuse"):  # the last one loads
        runs.use_saved_runs(mode, run_dir)
        seed_everything(0)
        model = build_model("unet", in_channels=1, out_channels=2, spatial_dims=2, width=2, depth=1)
        history = fit(model, make_batches(), DiceCELoss(), TrainConfig(steps=7, progress=False, device="cpu",
                                                                       collapse_check=False), run="a")
        histories.append((_numbers(history), torch.get_rng_state()))
    for history, rng in histories[1:]:
        assert history == histories[0][0] and torch.equal(rng, histories[0][1])


def test_a_one_shot_stream_of_other_data_retrains(run_dir, capsys):
    runs.use_saved_runs("reuse", run_dir)
    for noise in (0.5, 0.9):
        seed_everything(0)
        fit(build_model("unet", in_channels=1, out_channels=2, spatial_dims=2, width=2, depth=1), _one_shot(noise),
            DiceCELoss(), TrainConfig(steps=2, progress=False, device="cpu", collapse_check=False), run="a")
    assert "the first batch differs" in capsys.readouterr().out


def test_the_random_state_of_every_device_used_is_saved_and_restored(run_dir, monkeypatch):
    # No GPU here: a CUDA whose generators this test holds. The run trained while CUDA was in use
    # must leave, after a load, the CUDA generators as after the real run.
    device_states = {0: torch.tensor([1, 2, 3], dtype=torch.uint8)}
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [device_states[0].clone()])
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: device_states.__setitem__(device, state))
    runs.use_saved_runs("reuse", run_dir)
    _cell("a")
    after_training = device_states[0].clone()
    device_states[0] = torch.tensor([9, 9, 9], dtype=torch.uint8)  # later cells moved the device's generator on
    _cell("a")
    assert torch.equal(device_states[0], after_training)


def test_a_saved_run_of_an_older_format_is_retrained(run_dir, capsys):
    runs.use_saved_runs("reuse", run_dir)
    _cell("a")
    saved = torch.load(run_dir / "a.pt", weights_only=True)
    saved["expected"]["format"] = 1
    torch.save(saved, run_dir / "a.pt")
    capsys.readouterr()
    _cell("a")
    assert "older file format (1, now 2)" in capsys.readouterr().out


def test_refresh_always_trains_and_replaces(run_dir, capsys):
    runs.use_saved_runs("refresh", run_dir)
    _cell("a")
    first = (run_dir / "a.pt").stat().st_mtime_ns
    _cell("a")
    out = capsys.readouterr().out
    assert out.count("Trained run 'a'") == 2 and "Loaded" not in out
    assert (run_dir / "a.pt").stat().st_mtime_ns >= first


def test_a_corrupt_saved_run_is_retrained_with_a_notice(run_dir, capsys):
    runs.use_saved_runs("reuse", run_dir)
    (run_dir / "a.pt").write_bytes(b"not a torch file")
    _cell("a")
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
        _cell("../escape")


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
