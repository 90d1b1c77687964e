"""Build the authors' 3D U²-Net from their file and compare it with ``unet_lessons.models.U2Net``.

Not part of the test suite: it needs the official code, github.com/huangmozhilv/u2net_torch
(commit c655840), which the suite cannot download. Usage::

    python tests/benchmarks/official_u2net_check.py PATH/TO/u2net_torch_src

It builds the universal model of ``train_models.sh:29`` (five tasks, width 16, five poolings,
``module='separable_adapter'``) and the five independent models of ``train_models.sh:5-9`` (each
task's own poolings, ``config.py:67``), prints their parameter counts, then copies the official
weights into ours, layer by layer, and prints the largest output difference per task on one input.
It also computes the authors' training loss (``train.py:317``: ``lovasz_softmax`` of the softmax
plus ``FocalLoss(gamma=2)``, from ``loss/lovasz_loss.py`` and ``loss/focal_loss.py``) and ours on the
same logits, and prints the difference. tests/test_u2net.py pins the counts this printed.
"""

from __future__ import annotations

import sys
import types

import torch

TASKS = ["Task02_Heart", "Task03_Liver", "Task04_Hippocampus", "Task05_Prostate", "Task07_Pancreas"]
IN_CHANNELS = [1, 1, 1, 2, 1]
CLASSES = [2, 2, 3, 3, 2]
POOLS = {"Task02_Heart": [4, 5, 5], "Task03_Liver": [5, 5, 5], "Task04_Hippocampus": [3, 3, 3],
         "Task05_Prostate": [2, 5, 5], "Task07_Pancreas": [4, 5, 5]}


def load_official(source: str):
    config = types.ModuleType("config")
    config.__dict__.update(instance_norm=True, residual=True, deep_supervision=True, module="separable_adapter",
                           trainMode="universal", task_idx=0, num_pool_per_axis=[5, 5, 5])
    logger = types.SimpleNamespace(info=lambda *a, **k: None)
    sys.modules["config"] = config
    sys.modules["ccToolkits"] = types.SimpleNamespace(logger=logger)
    sys.path.insert(0, source)
    from models import u2net3d  # noqa: E402  (the official file)

    # torch 2.x's nn.Upsample takes a tuple scale factor, not the list the code passes (u2net3d.py:204);
    # the same layer, built from a tuple.
    upsample = u2net3d.Upsample3D
    u2net3d.Upsample3D = lambda scale_factor=(2, 2, 2): upsample(tuple(scale_factor))
    return config, u2net3d


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def official_to_ours(state: dict, tasks: list[str], names: list[str]) -> dict:
    """Rename the official state dict's keys to U2Net's."""
    def task(j: str) -> str:
        return names[int(j)]

    out = {}
    for key, value in state.items():
        parts = key.split(".")
        new = None
        if parts[0] == "in_tr_list":  # in_tr_list.j.op1.0.* (conv) / op1.1.0.* (IN)
            new = f"inputs.{task(parts[1])}." + ("0." if parts[3] == "0" else "1.") + parts[-1]
        elif parts[0] == "out_tr_list":
            new = f"outputs.{task(parts[1])}.{parts[-1]}"
        elif parts[0] == "down_blocks":  # down_blocks.i.op{1,2}.(adapOps.j.conv1|adapOps.j.op1.0|pwise.conv1|op.j|conv)
            unit = "unit1" if parts[2] == "op1" else "unit2"
            new = f"blocks.{parts[1]}.{unit}." + unit_key(parts[3:], task)
        elif parts[0] == "down_samps":  # down_samps.i.op1.(conv|op.j).*
            new = f"downs.{parts[1]}.unit." + unit_key(parts[3:], task)
        elif parts[0] == "up_samps":  # up_samps.i.op.(...)
            new = f"ups.{parts[1]}.unit." + unit_key(parts[3:], task)
        elif parts[0] == "up_blocks":
            unit = "unit1" if parts[2] == "op1" else "unit2"
            new = f"decoder.{parts[1]}.{unit}." + unit_key(parts[3:], task)
        elif parts[0] == "dSupers":  # dSupers.idx.j.op1.0 (conv) / op1.1.0 (IN); idx 0 is level 2
            level = 2 - int(parts[1])
            new = f"deep_heads.{task(parts[2])}.{level}." + ("conv." if parts[4] == "0" else "norm.") + parts[-1]
        if new is None:
            raise KeyError(key)
        out[new] = value
    return out


def unit_key(parts: list[str], task) -> str:
    if parts[0] == "adapOps":  # adapOps.j.conv1.* / adapOps.j.op1.0.*
        return f"adapters.{task(parts[1])}." + ("0." if parts[2] == "conv1" else "1.") + parts[-1]
    if parts[0] == "pwise":
        return "pointwise." + parts[-1]
    if parts[0] == "op":
        return f"norms.{task(parts[1])}.{parts[-1]}"
    if parts[0] == "conv":
        return "conv." + parts[-1]
    raise KeyError(".".join(parts))


def main(source: str) -> None:
    from unet_lessons.models import U2Net

    config, official = load_official(source)
    torch.manual_seed(0)
    theirs = official.u2net3d(inChans_list=IN_CHANNELS, base_outChans=16, num_class_list=CLASSES)
    ours = U2Net.preset("huang2019")
    print(f"universal: official {count(theirs):,}, ours {count(ours):,}")
    names = list(ours.domains)
    ours.load_state_dict(official_to_ours(theirs.state_dict(), TASKS, names))
    theirs.eval(), ours.eval()
    for j, name in enumerate(names):
        config.task_idx = j
        x = torch.randn(1, IN_CHANNELS[j], 64, 64, 64, generator=torch.Generator().manual_seed(j))
        with torch.no_grad():
            a = theirs(x)[0]
            b = ours(x, domain=name)
        print(f"  {name}: output {tuple(b.shape)}, largest |official - ours| = {(a - b).abs().max().item():.2e}")
    config.trainMode, total = "independent", 0
    for task, c, k in zip(TASKS, IN_CHANNELS, CLASSES):
        config.num_pool_per_axis = POOLS[task]
        independent = official.u2net3d(inChans_list=[c], base_outChans=16, num_class_list=[k])
        mine = U2Net(c, k, width=16, depth=max(POOLS[task]), separable=False)
        total += count(independent)
        print(f"independent {task}: official {count(independent):,}, ours {count(mine):,}")
    print(f"five independent models: {total:,}")

    from loss.focal_loss import FocalLoss  # noqa: E402  (the official files)
    from loss.lovasz_loss import lovasz_softmax
    import torch.nn.functional as F

    from unet_lessons.losses import LovaszFocalLoss
    for classes in (2, 3, 4):
        logits = torch.randn(2, classes, 16, 16, 16, generator=torch.Generator().manual_seed(classes))
        target = torch.randint(0, classes, (2, 16, 16, 16), generator=torch.Generator().manual_seed(10 + classes))
        official_loss = lovasz_softmax(F.softmax(logits, dim=1), target, ignore=10) + FocalLoss(gamma=2)(logits, target)
        print(f"loss, {classes} classes: official {official_loss.item():.6f}, ours {LovaszFocalLoss()(logits, target).item():.6f}")


if __name__ == "__main__":
    main(sys.argv[1])
