"""Lesson 09 (3D U²-Net): one universal network for three domains against one network per domain, and a new domain.

Three synthetic 3D domains that differ in modality, intensity profile, voxel spacing and label set:

* ``organ``: a CT-like abdomen (:func:`~unet_lessons.data.make_organ_volume`), one channel, an organ
  holding lesions (3 classes), slices twice as thick as the pixels are wide (2 x 1 x 1 mm);
* ``brain``: BraTS-like MRI (:func:`~unet_lessons.data.make_brats_volume`), four sequences, necrotic
  core, oedema and enhancing tumour (4 classes), isotropic 1.2 mm, noise 0.08;
* ``vessels``: an angiography-like vessel tree among equally bright blobs
  (:func:`~unet_lessons.data.make_vessel_volume`), one channel, 2 classes, 1 x 0.8 x 0.8 mm.

And a fourth, ``organ_mr``, held back for adaptation: the organ task as an MR-like scanner shows
it, the organ darker than its surroundings (the intensities negated), no lesion class (2 classes),
isotropic 1 mm. Each domain has 8 training volumes and 10 held-out ones of 40³, every channel
z-scored per volume (over the brain for ``brain``, as lesson 06).

Arms, on one total budget of ``steps`` = 240 steps of two 32³ patches (half of them centred on
foreground), Adam with a polynomial schedule at 3e-3 (the authors train far longer at 3e-4,
``config.py:41``), and the authors' loss, Lovász-Softmax plus focal (:class:`~unet_lessons.losses.LovaszFocalLoss`):

* ``universal``: one 3D U²-Net (separable units with domain adapters, the authors' layout at width
  8 and three downsamplings) trained on the three domains in turn, 240 steps (80 per domain);
* ``independent (<domain>)``: one network per domain of the same layout with full convolutions
  (the authors' "independent" models), 80 steps each: together the same 240 steps;
* ``independent, 240 steps (<domain>)``: the same, with as many steps as the universal network:
  the authors' regime, where every model runs the same training loop (``config.py:34-37``);
* ``separable, one domain (<domain>)``: the universal network's separable layout for one domain
  alone, 80 steps: against ``universal`` it measures what sharing costs or gives, against
  ``independent`` what the separable units cost, so that the two are not confounded;
* ``adapted (organ_mr)``: the trained universal network with a fourth domain's adapters, norms
  and input and output layers, everything else frozen, 80 steps on ``organ_mr``;
* ``new model (organ_mr)``: an independent network trained from scratch on ``organ_mr``, 80 steps.

Scores, per held-out volume: ``dice``, the mean Dice over the domain's foreground classes (an
absent class scores 1 when nothing is predicted, as lesson 06). For the universal arm also
``dice_swapped``: the same volume through another domain's adapters and norms (organ through
vessels', brain through organ's, vessels through brain's), its own input and output layers kept.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from ..data import DomainRoundRobin, PatchSampler, make_brats_volume, make_organ_volume, make_vessel_volume
from ..losses import LovaszFocalLoss
from ..metrics import dice_per_class
from ..models import U2Net
from ..train import TrainConfig, predict
from ..utils import seed_everything
from .declare import Arm, Benchmark

TABLE = "09_u2net_3d.csv"
METRIC = "dice"
SEEDS = (0, 1, 2, 3, 4)
DOMAINS = ("organ", "brain", "vessels")
NEW_DOMAIN = "organ_mr"
#: Which domain's adapters each domain's volumes run through in the swap experiment.
SWAP = {"organ": "vessels", "brain": "organ", "vessels": "brain"}
SHARED = dict(volume=40, train_volumes=8, test_volumes=10, width=8, depth=3, patch=32, batch=2, steps=240,
              adapt_steps=80, lr=3e-3, weight_decay=1e-5, optimizer="adam", schedule="poly", foreground_patches=0.5,
              loss="Lovász-Softmax + focal (gamma 2), 1:1, the authors' train.py:317", model="3D U²-Net layout (instance norm, LeakyReLU 0.01, deep supervision)",
              data="organ (CT-like, 2x1x1 mm, 3 classes), brain (4 MRI sequences, 1.2 mm, 4 classes), "
                   "vessels (1x0.8x0.8 mm, 2 classes); organ_mr for adaptation (negated contrast, 1 mm, 2 classes)")


#: Voxel size in mm along (D, H, W) of each domain's volumes.
SPACING = {"organ": (2.0, 1.0, 1.0), "brain": (1.2, 1.2, 1.2), "vessels": (1.0, 0.8, 0.8), "organ_mr": (1.0, 1.0, 1.0)}


def _z_score(image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Each channel of one volume to mean 0 and standard deviation 1 (over ``mask`` when given; 0 outside it)."""
    out = np.zeros_like(image, dtype=np.float32)
    for c, channel in enumerate(image):
        inside = channel[mask] if mask is not None else channel
        normalised = (channel - inside.mean()) / max(float(inside.std()), 1e-6)
        out[c] = np.where(mask, normalised, 0.0) if mask is not None else normalised
    return out


def _organ(seed: int) -> tuple[np.ndarray, np.ndarray]:
    image, label = make_organ_volume(SHARED["volume"], seed=seed, num_classes=3, spacing=SPACING["organ"])
    return _z_score(image), label


def _brain(seed: int) -> tuple[np.ndarray, np.ndarray]:
    # Noise 0.08 (the generator's default is 0.05): at 40³ the oedema's best intensity interval would reach 0.63.
    image, label = make_brats_volume(SHARED["volume"], seed=seed, spacing=SPACING["brain"], noise=0.08)
    return _z_score(image, image[0] != 0), label


def _vessels(seed: int) -> tuple[np.ndarray, np.ndarray]:
    image, label = make_vessel_volume(SHARED["volume"], seed=seed, spacing=SPACING["vessels"])
    return _z_score(image), label


def _organ_mr(seed: int) -> tuple[np.ndarray, np.ndarray]:
    image, label = make_organ_volume(SHARED["volume"], seed=seed, num_classes=2, spacing=SPACING["organ_mr"])
    return _z_score(-image), label  # negated: the organ darker than what surrounds it


#: name -> (make(seed) -> (image (C, D, H, W), label (D, H, W)), channels, class names, first seed).
GENERATORS: dict[str, tuple[Callable, int, tuple[str, ...], int]] = {
    "organ": (_organ, 1, ("background", "organ", "lesion"), 9000),
    "brain": (_brain, 4, ("background", "necrotic core", "oedema", "enhancing tumour"), 9100),
    "vessels": (_vessels, 1, ("background", "vessel"), 9200),
    "organ_mr": (_organ_mr, 1, ("background", "organ"), 9300),
}


def domain_classes(names=DOMAINS) -> dict[str, int]:
    """``{domain: number of classes}``, the universal model's ``domains``."""
    return {name: len(GENERATORS[name][2]) for name in names}


def domain_channels(names=DOMAINS) -> dict[str, int]:
    """``{domain: input channels}``."""
    return {name: GENERATORS[name][1] for name in names}


def make_domain(name: str) -> dict[str, np.ndarray]:
    """One domain's training and held-out volumes: ``train_images`` (N, C, D, H, W), ``train_labels``, ``test_*``."""
    make, _, _, first = GENERATORS[name]
    n_train, n_test = SHARED["train_volumes"], SHARED["test_volumes"]
    pairs = [make(first + i) for i in range(n_train + n_test)]
    images, labels = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    return dict(train_images=images[:n_train], train_labels=labels[:n_train],
                test_images=images[n_train:], test_labels=labels[n_train:])


def make_data() -> dict[str, Any]:
    """Every domain's volumes, keyed ``"<domain>/train_images"`` and so on."""
    return {f"{name}/{key}": value for name in GENERATORS for key, value in make_domain(name).items()}


def domain_view(data: dict, name: str) -> dict[str, np.ndarray]:
    """One domain's arrays from :func:`make_data`'s dict."""
    return {key.split("/", 1)[1]: value for key, value in data.items() if key.startswith(f"{name}/")}


ARMS = (
    Arm("universal", dict(model="universal", domains=list(DOMAINS)), live=True),
    *(Arm(f"independent ({name})", dict(model="independent", domain=name), live=True) for name in DOMAINS),
    *(Arm(f"separable, one domain ({name})", dict(model="separable", domain=name)) for name in DOMAINS),
    *(Arm(f"independent, 240 steps ({name})", dict(model="independent", domain=name, steps=240)) for name in DOMAINS),
    Arm(f"adapted ({NEW_DOMAIN})", dict(model="adapted", domain=NEW_DOMAIN), parent="universal"),
    Arm(f"new model ({NEW_DOMAIN})", dict(model="independent", domain=NEW_DOMAIN)),
)
ARM = {arm.name: arm for arm in ARMS}


def make_model(arm: Arm | str, seed: int) -> U2Net:
    """The arm's network, its weights drawn from ``seed``."""
    arm = ARM[arm] if isinstance(arm, str) else arm
    settings = arm.settings
    seed_everything(seed)
    common = dict(width=SHARED["width"], depth=SHARED["depth"])
    if settings["model"] == "universal":
        return U2Net(**common, domains=domain_classes(), domain_in_channels=domain_channels())
    if settings["model"] == "adapted":  # the universal network with a fourth domain; train_only freezes the rest
        names = (*DOMAINS, settings["domain"])
        model = U2Net(**common, domains=domain_classes(names), domain_in_channels=domain_channels(names))
        model.train_only(settings["domain"])
        return model
    name = settings["domain"]
    return U2Net(GENERATORS[name][1], len(GENERATORS[name][2]), **common, separable=settings["model"] == "separable")


def make_sampler(view: dict, seed: int) -> PatchSampler:
    """Patches of one domain's training volumes, already z-scored (mean 0, std 1: no further normalisation)."""
    return PatchSampler(view["train_images"], view["train_labels"], patch_size=SHARED["patch"],
                        batch_size=SHARED["batch"], augment=False, seed=seed, mean=0.0, std=1.0,
                        foreground=SHARED["foreground_patches"])


def make_batches(arm: Arm | str, seed: int, data: dict):
    """The arm's training batches: every domain in turn (universal), or one domain's."""
    arm = ARM[arm] if isinstance(arm, str) else arm
    if arm.settings["model"] == "universal":
        return DomainRoundRobin({name: make_sampler(domain_view(data, name), seed) for name in DOMAINS})
    name = arm.settings["domain"]
    sampler = make_sampler(domain_view(data, name), seed)
    return DomainRoundRobin({name: sampler}) if arm.settings["model"] == "adapted" else sampler


def make_config(arm: Arm | str, **overrides) -> TrainConfig:
    arm = ARM[arm] if isinstance(arm, str) else arm
    steps = arm.settings.get("steps", SHARED["steps"] if arm.settings["model"] == "universal"
                             else SHARED["steps"] // len(DOMAINS))
    return TrainConfig(**{"steps": steps, "lr": SHARED["lr"], "weight_decay": SHARED["weight_decay"],
                          "optimizer": SHARED["optimizer"], "schedule": SHARED["schedule"], **overrides})


def make_arm(name: str, seed: int, data: dict):
    """Everything ``fit`` needs for one arm and seed."""
    return make_model(name, seed), make_batches(name, seed, data), LovaszFocalLoss(), make_config(name)


def volume_dice(prediction: torch.Tensor, label: torch.Tensor, classes: int) -> float:
    """The mean Dice over the foreground classes of one volume (an absent class found absent scores 1)."""
    return float(dice_per_class(prediction, label, classes)[1:].mean())


@torch.no_grad()
def domain_dice(model: nn.Module, view: dict, classes: int, **forward) -> np.ndarray:
    """Per held-out volume of one domain, :func:`volume_dice` of the argmax over the whole volume."""
    model.eval()
    images, labels = torch.from_numpy(view["test_images"]), torch.from_numpy(view["test_labels"])
    if forward:
        device = next(model.parameters()).device  # fit leaves the model on the GPU when there is one
        logits = torch.cat([model(x[None].to(device), **forward).cpu() for x in images])
    else:
        logits = predict(model, images, batch_size=2)
    return np.array([volume_dice(p, t, classes) for p, t in zip(logits.argmax(1), labels)])


def held_out_scores(model: nn.Module, arm: Arm, data: dict) -> dict[str, dict[str, np.ndarray]]:
    """Per domain the model serves, per held-out volume: ``dice`` (and ``dice_swapped`` for the universal model)."""
    settings = arm.settings
    if settings["model"] == "universal":
        scores = {}
        for name in DOMAINS:
            view, classes = domain_view(data, name), domain_classes()[name]
            scores[name] = {"dice": domain_dice(model, view, classes, domain=name),
                            "dice_swapped": domain_dice(model, view, classes, domain=name, adapters=SWAP[name])}
        return scores
    name = settings["domain"]
    forward = {"domain": name} if settings["model"] == "adapted" else {}
    return {name: {"dice": domain_dice(model, domain_view(data, name), domain_classes((name,))[name], **forward)}}


def trained_parameters(model: nn.Module, arm: Arm, data: dict, history: dict) -> dict[str, float]:
    """How many parameters the arm trained, and its training wall time per step (a timing)."""
    return {"trained_parameters": float(sum(p.numel() for p in model.parameters() if p.requires_grad)),
            "seconds_per_step": history["seconds"] / len(history["step"])}


def first_volumes(data: dict) -> dict:
    """The fingerprint's view: every domain's first held-out volume."""
    return {key: (value[:1] if "/test_" in key else value) for key, value in data.items()}


BENCHMARK = Benchmark(lesson="09", table=TABLE, seeds=SEEDS, arms=ARMS, shared=SHARED, make_data=make_data,
                      make_arm=make_arm, score=held_out_scores, measure=trained_parameters, metric=METRIC,
                      fingerprint_view=first_volumes)
