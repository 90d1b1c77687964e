"""Data for the lessons: a synthetic EM-like task, the ISBI 2012 EM set, augmentation and patch sampling.

- ``download``: where datasets live (:func:`data_root`) and checksummed, atomic downloads.
- ``isbi``: the ISBI 2012 EM training set of the original U-Net (:func:`load_isbi`).
- ``synthetic``: :func:`make_cells_2d` and :class:`SyntheticCells2D`, the default data
  wherever a lesson needs no real data.
- ``shapes``: :func:`make_shapes_2d`, :func:`make_shapes_batch` and :class:`SyntheticShapes2D`,
  a multi-class RGB task of thin bars, crosses, stars and discs (labels index ``SHAPE_CLASSES``).
- ``augment``: the paper's flips, rotations and elastic deformation, 2D and 3D.
- ``sampler``: :class:`PatchSampler`, the endless stream of training batches.
- ``volumes``: synthetic 3D data, :func:`make_organ_volume` (organ and lesions) and
  :func:`make_brats_volume` (four MRI-like modalities, nested tumour regions).
- ``sparse``: :func:`sparsify_labels`, a few annotated slices per volume (3D U-Net).

Label convention: int64 class indices; for the EM data 0 = membrane, 1 = cell interior,
for the shapes task indices into ``SHAPE_CLASSES`` (0 = background).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .augment import elastic_deform, elastic_displacement, random_flip_rotate, warp
from .download import (
    DATA_ENV,
    OFFLINE_ENV,
    ChecksumError,
    DataError,
    DatasetNotFoundError,
    DownloadError,
    data_root,
    download_file,
    offline_requested,
    sha256_file,
)
from .sampler import DomainRoundRobin, PatchSampler
from .shapes import SHAPE_CLASSES, SyntheticShapes2D, make_shapes_2d, make_shapes_batch
from .sparse import IGNORE_INDEX, sparsify_labels
from .synthetic import SyntheticCells2D, make_cells_2d
from .volumes import (BRATS_CLASSES, BRATS_REGIONS, MODALITIES, ORGAN_CLASSES, SyntheticBraTS3D, SyntheticOrgans3D,
                      brats_regions, make_brats_volume, make_brats_volumes, make_organ_volume, make_organ_volumes, make_vessel_volume, normalize_brain,
                      scanner_shift)

# ``isbi`` is imported on first use: importing it here would put it in sys.modules before
# ``python -m unet_lessons.data.isbi`` runs it, and Python warns about exactly that.
_LAZY = {name: "isbi" for name in ("ISBI_SHA256", "ISBI_URL", "ISBI_DIRNAME", "ISBI_SPLIT",
                                   "isbi_folder", "ensure_isbi", "load_isbi")}

if TYPE_CHECKING:  # for editors and type checkers, which do not run __getattr__
    from .isbi import ISBI_DIRNAME, ISBI_SHA256, ISBI_SPLIT, ISBI_URL, ensure_isbi, isbi_folder, load_isbi

__all__ = [
    "DATA_ENV",
    "OFFLINE_ENV",
    "DataError",
    "DatasetNotFoundError",
    "ChecksumError",
    "DownloadError",
    "sha256_file",
    "data_root",
    "offline_requested",
    "download_file",
    *_LAZY,
    "make_cells_2d",
    "SyntheticCells2D",
    "SHAPE_CLASSES",
    "make_shapes_2d",
    "make_shapes_batch",
    "SyntheticShapes2D",
    "random_flip_rotate",
    "elastic_displacement",
    "warp",
    "elastic_deform",
    "PatchSampler",
    "DomainRoundRobin",
    "IGNORE_INDEX",
    "sparsify_labels",
    "ORGAN_CLASSES",
    "MODALITIES",
    "BRATS_CLASSES",
    "BRATS_REGIONS",
    "make_organ_volume",
    "make_brats_volume",
    "make_brats_volumes",
    "make_organ_volumes",
    "make_vessel_volume",
    "brats_regions",
    "normalize_brain",
    "scanner_shift",
    "SyntheticOrgans3D",
    "SyntheticBraTS3D",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
