"""Reference solutions of lesson 02 (the U-Net), checked by :func:`unet_lessons.exercises.check_exercise`."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from . import register


@register("lesson02.valid_sizes", task="valid_sizes_depth3(start, stop) -> the input sides n in [start, stop) "
          "that an unpadded U-Net of depth 3 can take, in increasing order.",
          cases=lambda rng: [{"start": 100, "stop": 200}, {"start": 20, "stop": 90},
                             {"start": int(rng.integers(200, 300)), "stop": int(rng.integers(400, 500))}],
          hint="follow n through the network: every stage's two 3×3 convolutions take 4 px off, each 2×2 pooling "
               "needs an even size and halves it, each up-convolution doubles it; a size works when every "
               "intermediate size stays positive and every pooling gets an even size.")
def valid_sizes_depth3(start: int, stop: int) -> list[int]:
    def works(n: int) -> bool:
        for _ in range(3):          # contracting path: two convs trim 4, then pool needs an even size
            n -= 4
            if n <= 0 or n % 2:
                return False
            n //= 2
        n -= 4                      # bottleneck
        for _ in range(3):          # expanding path: up x2, two convs trim 4
            if n <= 0:
                return False
            n = 2 * n - 4
        return n > 0

    return [n for n in range(start, stop) if works(n)]


@register("lesson02.textbook_field", task="textbook_field_depth3() -> the textbook receptive field (a number) "
          "of the unpadded depth-3 U-Net.",
          cases=lambda rng: [{}],
          hint="r grows by (k - 1)·j per layer and j is the product of the strides so far: on the way down every "
               "pooling doubles j; on the way up every 2×2 up-convolution halves it again. The 1×1 head adds nothing.")
def textbook_field_depth3() -> float:
    r, j = 1.0, 1.0
    for _level in range(3):
        r += 2 * j + 2 * j          # two 3x3 convs
        r += 1 * j                  # 2x2 max-pool, stride 2
        j *= 2
    r += 2 * j + 2 * j              # bottleneck convs
    for _level in range(3):
        j /= 2                      # 2x2 up-conv, stride 2: each output reads one input
        r += 2 * j + 2 * j          # two 3x3 convs
    return r                        # the 1x1 head adds nothing


def _loss_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for batch, classes, side in ((2, 2, 16), (1, 3, 12), (3, 2, 9)):
        generator = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
        cases.append({"logits": torch.randn(batch, classes, side, side, generator=generator),
                      "target": torch.randint(0, classes, (batch, side, side), generator=generator),
                      "weights": torch.rand(batch, side, side, generator=generator) * 10})
    return cases


@register("lesson02.weighted_cross_entropy", task="pixel_weighted_cross_entropy(logits, target, weights) -> the "
          "scalar loss of Eq. 1: −mean over pixels of w(x)·log p_{l(x)}(x).",
          cases=_loss_cases,
          hint="take log_softmax over the class dimension (dim=1), pick each pixel's true class with gather, "
               "multiply by the weight map, then average over every pixel of the batch and negate.")
def pixel_weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    log_probs = F.log_softmax(logits, dim=1)                     # (B, C, H, W)
    picked = log_probs.gather(1, target[:, None]).squeeze(1)     # (B, H, W)
    return -(weights * picked).mean()


@register("lesson02.iou_from_dice", task="iou_from_dice(dice) -> the IoU that goes with each Dice score (a tensor).",
          cases=lambda rng: [{"dice": torch.from_numpy(rng.random(5))}, {"dice": torch.tensor([0.0, 1.0, 0.5])}],
          hint="write Dice = 2|A∩B| / (|A| + |B|) and IoU = |A∩B| / |A∪B| with |A∪B| = |A| + |B| − |A∩B|; "
               "eliminate |A∩B| / (|A| + |B|).")
def iou_from_dice(dice: torch.Tensor) -> torch.Tensor:
    return dice / (2 - dice)


def _tiny_unet() -> torch.nn.Module:
    """Case 1's network: a depth-2 U-Net of width 2, its weights drawn from seed 0."""
    from ..models import UNet
    from ..utils import seed_everything

    seed_everything(0)
    return UNet(1, 2, width=2, depth=2, upsample="interp")


def _small_unet() -> torch.nn.Module:
    """Case 2's network: a depth-3 U-Net of width 3, its weights drawn from seed 1."""
    from ..models import UNet
    from ..utils import seed_everything

    seed_everything(1)
    return UNet(1, 2, width=3, depth=3, upsample="interp")


def _loop_cases(rng: np.random.Generator) -> list[dict]:
    from ..losses import DiceCELoss

    cases = []
    for make_model, steps, side, lr, loss_fn in ((_tiny_unet, 5, 16, 1e-3, DiceCELoss()),
                                                 (_small_unet, 4, 24, 3e-3, F.cross_entropy)):
        generator = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
        batches = [(torch.randn(2, 1, side, side, generator=generator),
                    torch.randint(0, 2, (2, side, side), generator=generator)) for _ in range(steps)]
        cases.append({"make_model": make_model, "batches": batches, "loss_fn": loss_fn, "lr": lr})
    return cases


def _same_losses(answer, expected) -> bool:
    """The same number of losses, each a float within 1e-6 of ``fit``'s."""
    return (isinstance(answer, list) and len(answer) == len(expected)
            and all(isinstance(a, float) and abs(a - e) <= 1e-6 for a, e in zip(answer, expected)))


@register("lesson02.training_loop", task="train_steps(make_model, batches, loss_fn, lr) -> the list of training "
          "losses (floats), one per batch: build the network with make_model(), then one torch.optim.Adam step "
          "at the constant learning rate lr on each (x, y) pair of the list batches, in order.",
          cases=_loop_cases, compare=_same_losses,
          hint="build the optimizer once, before the loop, over model.parameters(); in each step: logits = "
               "model(x), loss = loss_fn(logits, y), then optimizer.zero_grad(), loss.backward(), "
               "optimizer.step(); keep loss.item(), the loss before the step changes the weights. If the first "
               "loss is right and the later ones are not, look at the order of those three calls.")
def train_steps(make_model, batches, loss_fn, lr: float) -> list[float]:
    """The reference is ``fit`` itself, with Adam at a constant learning rate on the CPU: a student's loop that
    passes gives ``fit``'s losses to 1e-6."""
    from ..train import TrainConfig, fit

    config = TrainConfig(steps=len(batches), lr=lr, optimizer="adam", schedule="constant", device="cpu",
                         progress=False, collapse_check=False)
    return fit(make_model(), batches, loss_fn, config)["loss"]
