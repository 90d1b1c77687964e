import re
import warnings

import numpy as np
import pytest
import torch

from unet_lessons.data import make_cells_2d
from unet_lessons.losses import DiceCELoss
from unet_lessons.metrics import dice_per_class
from unet_lessons.models import UNet
from unet_lessons.train import (
    PredictionCollapseWarning,
    TrainConfig,
    collapse_message,
    evaluate,
    fit,
    load_checkpoint,
    save_checkpoint,
)


def _cells_batch():
    """Two 64x64 synthetic EM patches, where no intensity threshold separates membrane from cell."""
    pairs = [make_cells_2d(64, seed=seed) for seed in (0, 1)]
    images = torch.from_numpy(np.stack([image for image, _ in pairs]))[:, None]
    images = (images - images.mean()) / images.std()
    return images, torch.from_numpy(np.stack([label for _, label in pairs]))


def _one_batch():
    """Two blobs on noise: a tiny fixed batch for the quick checks."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    labels = torch.stack([((yy - 10) ** 2 + (xx - 12) ** 2 < 40).long(), ((yy - 20) ** 2 + (xx - 18) ** 2 < 60).long()])
    images = labels[:, None].float() + 0.3 * torch.randn(2, 1, 32, 32, generator=g)
    return images, labels


def _repeat(batch):
    while True:
        yield batch


def test_fit_overfits_one_batch():
    torch.manual_seed(0)
    images, labels = _cells_batch()
    model = UNet(1, 2, base_features=8, depth=2)
    history = fit(model, _repeat((images, labels)), DiceCELoss(), TrainConfig(steps=200, lr=1e-2, progress=False, device="cpu"))
    assert len(history["loss"]) == 200 and history["loss"][-1] < history["loss"][0]
    prediction = model.eval()(images).argmax(1)
    assert dice_per_class(prediction, labels, 2).min() > 0.95  # membrane and cell


def test_fit_runs_validation_and_records_it():
    images, labels = _one_batch()
    model = UNet(1, 2, base_features=4, depth=1)
    calls = []

    def val_fn(m):
        calls.append(m.training)
        return {"dice": 0.5}

    history = fit(model, _repeat((images, labels)), DiceCELoss(),
                  TrainConfig(steps=10, eval_every=4, progress=False, device="cpu"), val_fn=val_fn)
    assert history["val_step"] == [4, 8, 10] and history["val_dice"] == [0.5] * 3
    assert history["lr"][0] < history["lr"][2]  # one-cycle warm-up


def test_collapse_message_names_the_usual_causes():
    assert collapse_message(torch.zeros(4, 4, dtype=torch.long), torch.eye(4, dtype=torch.long)) is not None
    assert "0/255" in collapse_message(torch.zeros(4, 4, dtype=torch.long), torch.eye(4, dtype=torch.long))
    assert collapse_message(torch.eye(4, dtype=torch.long), torch.eye(4, dtype=torch.long)) is None


def test_fit_warns_when_predictions_collapse():
    images, labels = _one_batch()
    model = UNet(1, 2, base_features=4, depth=1)
    with torch.no_grad():  # a head that always says class 0
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([100.0, -100.0]))
    model.head.requires_grad_(False)
    for p in model.parameters():
        p.requires_grad_(False)
    model.inc.conv1.conv.weight.requires_grad_(True)
    with pytest.warns(PredictionCollapseWarning, match="all-black") as caught:
        fit(model, _repeat((images, labels)), DiceCELoss(), TrainConfig(steps=12, progress=False, device="cpu"))
    # Raised at the package's own frame: no file path of the student's cell or of ours, no echoed source line.
    shown = warnings.formatwarning(caught[0].message, caught[0].category, caught[0].filename, caught[0].lineno)
    assert shown.startswith("unet_lessons.train:0: PredictionCollapseWarning: ") and shown.count("\n") == 1
    assert "/" not in caught[0].filename


def test_fit_does_not_warn_when_learning():
    images, labels = _one_batch()
    with warnings.catch_warnings():
        warnings.simplefilter("error", PredictionCollapseWarning)
        fit(UNet(1, 2, base_features=8, depth=2), _repeat((images, labels)), DiceCELoss(),
            TrainConfig(steps=60, lr=1e-2, progress=False, device="cpu"))


def test_evaluate_reports_named_metrics_and_warns_on_collapse():
    images, labels = _one_batch()
    model = UNet(1, 2, base_features=4, depth=1)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([5.0, -5.0]))
    with pytest.warns(PredictionCollapseWarning):
        report = evaluate(model, images, labels, class_names=["background", "blob"])
    assert report["background Dice"] > 0.5 and report["blob Dice"] == 0.0
    assert report["pixel error"] == pytest.approx(labels.float().mean().item())


def test_checkpoint_round_trip(tmp_path):
    model = UNet(1, 2, base_features=4, depth=2)
    config = TrainConfig(steps=3)
    path = save_checkpoint(tmp_path / "ckpt" / "unet.pt", model, model_name="unet",
                           model_kwargs=dict(in_channels=1, out_channels=2, base_features=4, depth=2),
                           config=config, history={"loss": [1.0]})
    assert [p.name for p in path.parent.iterdir()] == ["unet.pt"]  # no temporary left behind
    rebuilt, checkpoint = load_checkpoint(path)
    x = torch.randn(1, 1, 16, 16)
    assert torch.equal(rebuilt.eval()(x), model.eval()(x))
    assert checkpoint["config"]["steps"] == 3 and checkpoint["history"]["loss"] == [1.0]
    loaded, _ = load_checkpoint(path, UNet(1, 2, base_features=4, depth=2))
    assert torch.equal(loaded.eval()(x), model(x))


def test_bad_optimizer_and_schedule_are_named():
    images, labels = _one_batch()
    with pytest.raises(ValueError, match="optimizer"):
        fit(UNet(1, 2, base_features=2, depth=1), _repeat((images, labels)), DiceCELoss(),
            TrainConfig(steps=1, optimizer="lbfgs", progress=False))
    with pytest.raises(ValueError, match="schedule"):
        fit(UNet(1, 2, base_features=2, depth=1), _repeat((images, labels)), DiceCELoss(),
            TrainConfig(steps=1, schedule="cosine", progress=False))


def test_bad_step_counts_are_named():
    images, labels = _one_batch()
    for steps in (0, -3, 2.5):
        with pytest.raises(ValueError, match="steps"):
            fit(UNet(1, 2, base_features=2, depth=1), _repeat((images, labels)), DiceCELoss(),
                TrainConfig(steps=steps, progress=False))


def test_short_runs_and_finite_loaders_work():
    images, labels = _one_batch()
    one_epoch = [(images, labels)]  # a finite "loader" of one batch, restarted each epoch
    history = fit(UNet(1, 2, base_features=2, depth=1), one_epoch, DiceCELoss(),
                  TrainConfig(steps=3, progress=False, device="cpu", collapse_check=False))
    assert history["step"] == [1, 2, 3]
    with pytest.raises(ValueError, match="no batch"):
        fit(UNet(1, 2, base_features=2, depth=1), [], DiceCELoss(), TrainConfig(steps=2, progress=False))


def test_validation_runs_in_eval_mode_and_the_bar_completes():
    images, labels = _one_batch()
    modes = []
    fit(UNet(1, 2, base_features=2, depth=1), _repeat((images, labels)), DiceCELoss(),
        TrainConfig(steps=4, eval_every=2, progress=False, collapse_check=False),
        val_fn=lambda m: modes.append(m.training) or {})
    assert modes == [False, False]


def test_fit_names_the_fix_when_labels_exceed_the_output_channels():
    from unet_lessons.train import check_labels
    logits = torch.zeros(1, 3, 4, 4, 4)
    with pytest.raises(ValueError, match="out_channels=5"):
        check_labels(logits, torch.full((1, 4, 4, 4), 4))
    with pytest.raises(ValueError, match=r"\[-1\] outside \[0, 2\].*ignore_index=-1"):
        check_labels(logits, torch.full((1, 4, 4, 4), -1))
    check_labels(logits, torch.full((1, 4, 4, 4), -1), ignore_index=-1)  # all unlabelled: fine
    check_labels(logits, torch.full((1, 4, 4, 4), 2))
    model = UNet(1, 3, spatial_dims=3, base_features=2, depth=1)
    batches = [(torch.randn(1, 1, 4, 4, 4), torch.full((1, 4, 4, 4), 3))]
    with pytest.raises(ValueError, match=r"labels \[3\] outside \[0, 2\].*out_channels=4"):
        fit(model, batches, torch.nn.CrossEntropyLoss(), TrainConfig(steps=1, progress=False))


# ----- the training contract: batch forms and output kinds ---------------------------------

class _DictOutputNet(torch.nn.Module):
    """A stand-in for a network with an auxiliary loss and an extra input (e.g. a domain code)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)
        self.seen_domains = []

    def forward(self, x, domain=None):
        self.seen_domains.append(domain)
        logits = self.conv(x)
        return {"logits": logits, "aux_loss": 0.0 * logits.sum() + 0.5, "reconstruction": x}


def test_fit_takes_dict_batches_and_passes_extra_fields_to_the_model():
    images, labels = _one_batch()
    model = _DictOutputNet()
    batches = [{"image": images, "label": labels, "domain": torch.tensor([1, 0])}]
    history = fit(model, batches, DiceCELoss(), TrainConfig(steps=3, progress=False, device="cpu"))
    assert all(torch.equal(d, torch.tensor([1, 0])) for d in model.seen_domains) and len(model.seen_domains) == 3
    plain = DiceCELoss()(model.conv(images), labels).item()
    assert history["loss"][-1] == pytest.approx(plain + 0.5, abs=0.05)  # the auxiliary loss was added


def test_fit_names_the_missing_key_of_a_dict_batch():
    images, labels = _one_batch()
    with pytest.raises(ValueError, match="'image' and 'label'.*'img'"):
        fit(_DictOutputNet(), [{"img": images, "label": labels}], DiceCELoss(), TrainConfig(steps=1, progress=False))
    with pytest.raises(ValueError, match="a batch must be"):
        fit(_DictOutputNet(), [(images, labels, labels)], DiceCELoss(), TrainConfig(steps=1, progress=False))


def test_fit_passes_only_the_batch_fields_that_forward_accepts():
    images, labels = _one_batch()
    metadata = {"image_meta_dict": {"filename_or_obj": ["a.nii.gz", "b.nii.gz"]}, "foo": torch.zeros(2)}
    config = TrainConfig(steps=2, progress=False, device="cpu", collapse_check=False)
    # A network that takes the image alone trains on a MONAI batch that carries metadata.
    fit(UNet(1, 2, base_features=2, depth=1), [{"image": images, "label": labels, **metadata}], DiceCELoss(), config)
    # A multi-domain network still receives its domain, a string or a list of strings, and nothing else.
    for domain in ("em", ["em", "ct"]):
        model = _DictOutputNet()
        fit(model, [{"image": images, "label": labels, "domain": domain, **metadata}], DiceCELoss(), config)
        assert model.seen_domains == [domain, domain]

    class TakesEverything(_DictOutputNet):
        def forward(self, x, **fields):
            self.seen_domains.append(sorted(fields))
            return super().forward(x)

    model = TakesEverything()
    fit(model, [{"image": images, "label": labels, "domain": "em", **metadata}], DiceCELoss(), config)
    assert model.seen_domains[0] == ["domain", "foo", "image_meta_dict"]


def test_fit_moves_a_loss_module_to_the_models_device():
    # No GPU here: the loss says where it was moved. Without the move, lesson 04's weighted
    # cross-entropy keeps its class weights on the CPU while the logits are on the GPU.
    class WhereMoved(torch.nn.CrossEntropyLoss):
        def __init__(self):
            super().__init__(weight=torch.tensor([1.0, 3.0]))
            self.moved_to = []

        def to(self, *args, **kwargs):
            self.moved_to.append(torch.device(args[0] if args else kwargs["device"]))
            return super().to(*args, **kwargs)

    images, labels = _one_batch()
    loss, model = WhereMoved(), UNet(1, 2, base_features=2, depth=1)
    fit(model, [(images, labels)], loss, TrainConfig(steps=1, progress=False, device="cpu", collapse_check=False))
    assert loss.moved_to == [next(model.parameters()).device] and loss.weight.device == loss.moved_to[0]


def test_the_training_loss_is_the_segmentation_loss_plus_the_auxiliary_loss_to_the_last_bit():
    # Stored notebook outputs compare exactly: fit must add the terms as output_loss always did.
    import copy

    from unet_lessons.models.base import output_loss

    class WeightedAuxiliary(_DictOutputNet):
        def forward(self, x, domain=None):
            output = super().forward(x)
            return {**output, "aux_loss": 0.1 * output["logits"].pow(2).mean()}

    images, labels = _one_batch()
    torch.manual_seed(0)
    model = WeightedAuxiliary()
    initial = copy.deepcopy(model)
    history = fit(model, [(images, labels)], DiceCELoss(), TrainConfig(steps=1, progress=False, device="cpu"))
    assert history["loss"][0] == output_loss(initial(images), labels, DiceCELoss())[0].item()


def test_predict_reads_every_output_kind():
    from unet_lessons.train import predict

    images, _ = _one_batch()
    model = _DictOutputNet()
    torch.testing.assert_close(predict(model, images), model.conv(images).detach())


# ----- failures that must not pass silently --------------------------------------------------

def test_fit_stops_at_the_first_nan_loss_and_blames_the_inputs():
    from unet_lessons.losses import NonFiniteLogitsWarning
    from unet_lessons.train import NonFiniteLossError

    images, labels = _one_batch()
    images[0, 0, 3, 3] = float("nan")
    model = torch.nn.Conv2d(1, 2, 3, padding=1)  # no input check of its own: fit's check must catch it
    # The loss warns that its logits are not finite; fit then stops with the cause it can see.
    with pytest.warns(NonFiniteLogitsWarning), \
            pytest.raises(NonFiniteLossError, match=r"step 1: .*NaN or inf in 1 of its 2048 values"):
        fit(model, _repeat((images, labels)), DiceCELoss(), TrainConfig(steps=5, progress=False, device="cpu"))


def test_fit_blames_the_learning_rate_when_the_weights_diverge():
    from unet_lessons.losses import NonFiniteLogitsWarning
    from unet_lessons.train import NonFiniteLossError

    images, labels = _one_batch()
    model = UNet(1, 2, base_features=4, depth=1)
    with pytest.warns(NonFiniteLogitsWarning), \
            pytest.raises(NonFiniteLossError, match=r"step 2: .*weights became NaN or inf.*lr=inf.*too high"):
        fit(model, _repeat((images, labels)), DiceCELoss(),
            TrainConfig(steps=5, lr=float("inf"), schedule="constant", progress=False, device="cpu"))


def test_the_non_finite_message_names_the_segmentation_loss_when_it_went_non_finite():
    from unet_lessons.train import NonFiniteLossError

    def overflowing_loss(logits, target):
        return logits.sum() * float("nan")

    images, labels = _one_batch()
    with pytest.raises(NonFiniteLossError) as error:
        fit(_DictOutputNet(), [(images, labels)], overflowing_loss, TrainConfig(steps=2, progress=False, device="cpu"))
    message = str(error.value)
    assert re.search(r"step 1: the segmentation loss \(.*overflowing_loss\) is nan\. The inputs and weights are "
                     r"finite, so the loss itself overflowed", message), message
    assert "auxiliary" not in message


def test_the_non_finite_message_names_the_models_auxiliary_loss_when_it_went_non_finite():
    from unet_lessons.train import NonFiniteLossError

    class DivergingKL(_DictOutputNet):
        def forward(self, x, domain=None):
            output = super().forward(x)
            return {**output, "aux_loss": output["aux_loss"] * float("inf")}  # a KL whose exp(log-variance) overflowed

    images, labels = _one_batch()
    with pytest.raises(NonFiniteLossError) as error:
        fit(DivergingKL(), [(images, labels)], DiceCELoss(), TrainConfig(steps=2, progress=False, device="cpu"))
    message = str(error.value)
    assert message.startswith("Training stopped at step 1: the model's auxiliary loss (aux_loss, e.g. the VAE's KL "
                              "and reconstruction terms) is inf. The inputs and weights are finite, so the model's "
                              "auxiliary term itself overflowed"), message
    assert "segmentation loss" not in message


def test_negative_labels_name_ignore_index_not_negative_channels():
    images, labels = _one_batch()
    labels[0, 0, 0] = -3
    with pytest.raises(ValueError) as error:
        DiceCELoss()(torch.randn(2, 2, 32, 32), labels)
    assert "[-3]" in str(error.value) and "ignore_index=-3" in str(error.value)
    assert "-2 output channels" not in str(error.value)


def test_checkpoint_errors_name_the_file_and_what_it_holds(tmp_path):
    model = UNet(1, 2, base_features=4, depth=1)
    path = save_checkpoint(tmp_path / "net.pt", model, model_name="unet")
    other = UNet(1, 3, base_features=4, depth=1)
    with pytest.raises(ValueError) as error:
        load_checkpoint(path, other)
    text = str(error.value)
    assert str(path) in text and "does not fit the model passed" in text and "head.weight" in text
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"corrupt.pt is not a readable checkpoint.*truncated or corrupt"):
        load_checkpoint(corrupt)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")


def test_checkpoints_refuse_to_run_code(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"state_dict": {}, "payload": _DictOutputNet}, path)  # a class: only a full unpickler loads it
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(path, _DictOutputNet())


# ----- region targets --------------------------------------------------------------------------

def _region_batch():
    from unet_lessons.targets import labels_to_regions

    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(24), torch.arange(24), indexing="ij")
    r = ((yy - 12) ** 2 + (xx - 12) ** 2).float().sqrt()
    labels = torch.where(r < 4, 3, torch.where(r < 6, 1, torch.where(r < 9, 2, 0)))[None].repeat(2, 1, 1)
    images = torch.stack([(labels == c).float() for c in (1, 2, 3)], 1) + 0.2 * torch.randn(2, 3, 24, 24, generator=g)
    return images, labels_to_regions(labels)


def test_fit_trains_on_region_targets():
    from unet_lessons.losses import RegionDiceBCELoss
    from unet_lessons.metrics import dice_per_region

    torch.manual_seed(0)
    images, regions = _region_batch()
    model = UNet(3, 3, base_features=8, depth=1, norm=None)  # with batch norm the small ET needs more than 60 steps
    history = fit(model, _repeat((images, regions)), RegionDiceBCELoss(nested=True),
                  TrainConfig(steps=60, lr=1e-2, progress=False, device="cpu", collapse_check=False))
    assert history["loss"][-1] < 0.2 * history["loss"][0]
    assert dice_per_region(model.eval()(images) > 0, regions).min() > 0.9


def test_fit_refuses_region_targets_that_do_not_fit_the_output():
    images, regions = _region_batch()
    model = UNet(3, 2, base_features=4, depth=1)
    with pytest.raises(ValueError, match="3 channels .* predicts 2 regions"):
        fit(model, [(images, regions)], torch.nn.BCEWithLogitsLoss(), TrainConfig(steps=1, progress=False))
    with pytest.raises(ValueError, match="must be binary"):
        fit(UNet(3, 3, base_features=4, depth=1), [(images, regions * 0.5)], torch.nn.BCEWithLogitsLoss(),
            TrainConfig(steps=1, progress=False))


def test_collapse_message_reads_region_maps():
    _, regions = _region_batch()
    assert "region 0 is predicted nowhere" in collapse_message(torch.zeros_like(regions, dtype=torch.bool), regions)
    assert "region 2 is predicted everywhere" in collapse_message(
        torch.cat([regions[:, :2].bool(), torch.ones_like(regions[:, 2:], dtype=torch.bool)], 1), regions)
    assert collapse_message(regions.bool(), regions) is None


def test_progress_leaves_one_summary_line(capsys):
    images, labels = _one_batch()
    fit(UNet(1, 2, base_features=2, depth=1), _repeat((images, labels)), DiceCELoss(),
        TrainConfig(steps=3, device="cpu", collapse_check=False))
    out = capsys.readouterr()
    assert re.fullmatch(r"3/3 steps in \d+ s, last loss \d+\.\d{3}\n", out.out), out.out
    assert "%|" not in out.err  # no bar left behind (and none drawn into a log file)


def test_progress_in_a_notebook_replaces_its_line(monkeypatch):
    from unet_lessons import progress

    shown = []

    class FakeLine:
        def __init__(self, text):
            shown.append(text)

        def update(self, text):
            shown.append(text)

    monkeypatch.setattr(progress, "in_notebook", lambda: True)
    monkeypatch.setattr(progress, "_Line", FakeLine)
    bar = progress.StepProgress(5, label="02-unet", min_interval=0.0)
    for step in range(1, 6):
        bar.update(step, 0.5)
    summary = bar.finish(5, 0.25)
    assert shown[0] == "02-unet: 0/5 steps" and "about" in shown[1] and shown[-1] == summary
    assert re.fullmatch(r"02-unet: 5/5 steps in \d+ s, last loss 0\.250", summary)


def test_fit_hands_the_batches_weight_map_to_a_loss_that_takes_it():
    from unet_lessons.data import PatchSampler
    from unet_lessons.losses import WeightedCrossEntropy, weighted_cross_entropy

    pairs = [make_cells_2d(32, seed=seed) for seed in (0, 1)]
    images, labels = np.stack([image for image, _ in pairs]), np.stack([label for _, label in pairs])
    weights = np.random.default_rng(0).uniform(0.5, 5.0, labels.shape).astype(np.float32)
    config = TrainConfig(steps=3, lr=1e-3, schedule="constant", device="cpu", progress=False, collapse_check=False)

    def sampler():
        return PatchSampler(images, labels, 16, 2, elastic_sigma=0.0, seed=0, weights=weights)

    torch.manual_seed(0)
    model = UNet(1, 2, width=2, depth=1)
    by_hand = [b for _, b in zip(range(3), sampler())]
    history = fit(model, sampler(), WeightedCrossEntropy(), config)
    torch.manual_seed(0)
    twin = UNet(1, 2, width=2, depth=1)
    optimizer = torch.optim.Adam(twin.parameters(), lr=1e-3)
    for step, batch in enumerate(by_hand):
        loss = weighted_cross_entropy(twin(batch["image"]), batch["label"], batch["weight"])
        optimizer.zero_grad(), loss.backward(), optimizer.step()
        assert abs(loss.item() - history["loss"][step]) < 1e-6
    # Weights the loss cannot take are not silently dropped.
    with pytest.raises(ValueError, match="takes no `weight`"):
        fit(UNet(1, 2, width=2, depth=1), sampler(), DiceCELoss(), config)
