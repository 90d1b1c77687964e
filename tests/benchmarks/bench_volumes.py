"""Benchmark of the synthetic 3D data: time per volume, foreground fractions, intensity baselines.

Run: ``python tests/benchmarks/bench_volumes.py`` (``make bench``). Not collected by pytest:
time budgets belong here, not in timed tests.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from unet_lessons.data import make_brats_volume, make_organ_volume
from unet_lessons.metrics import best_intensity_dice


def timed(make, count: int = 20) -> tuple[list[float], list]:
    times, volumes = [], []
    make(seed=-1 % 2**32)  # warm-up (imports, caches)
    for seed in range(count):
        start = time.perf_counter()
        volumes.append(make(seed=seed))
        times.append(time.perf_counter() - start)
    return times, volumes


def main() -> None:
    for name, make in [("organ 64³", lambda seed: make_organ_volume(64, seed=seed)),
                       ("organ 64³, 2% foreground", lambda seed: make_organ_volume(64, seed=seed, foreground_fraction=0.02)),
                       ("BraTS-like 64³", lambda seed: make_brats_volume(64, seed=seed))]:
        times, volumes = timed(make)
        labels = np.stack([label for _, label in volumes])
        images = np.stack([image[0] for image, _ in volumes])
        fractions = np.bincount(labels.ravel()) / labels.size
        baselines = [best_intensity_dice(images, labels == c) for c in range(1, len(fractions))]
        print(f"{name:26s} median {statistics.median(times) * 1000:5.1f} ms, mean {statistics.mean(times) * 1000:5.1f} ms "
              f"per volume; class fractions {np.round(fractions, 4).tolist()}; best intensity window Dice "
              f"(channel 0) {np.round(baselines, 3).tolist()}")


if __name__ == "__main__":
    main()
