"""The ISBI 2012 EM segmentation training set: the data the original U-Net was trained on.

Thirty 512 x 512 serial-section transmission electron microscopy slices of the
*Drosophila* first-instar larva ventral nerve cord, with binary labels: 255 = cell
interior, 0 = membrane. Here they become class 1 (interior, the foreground) and
class 0 (membrane), the convention of the whole package.

The files are the PNG export of the challenge's ``train-volume.tif`` and
``train-labels.tif`` in the MIT-licensed repository ``zhixuhao/unet`` (pinned to one
commit). They are downloaded once into ``data_root() / "isbi2012-em"`` and checked
against the SHA-256 sums below on every use; ``python -m unet_lessons.data.isbi``
does the download ahead of time. Each file is tried at every address in
:data:`ISBI_URLS` in turn (GitHub, then jsDelivr's mirror of the same commit), or at the
addresses in the environment variable ``UNET_LESSONS_ISBI_URLS``.

Cite when used:
    A. Cardona et al., "An integrated micro- and macroarchitectural analysis of the
    Drosophila brain by computer-assisted serial section electron microscopy",
    PLoS Biology 8(10): e1000502, 2010.
    I. Arganda-Carreras et al., "Crowdsourcing the creation of image segmentation
    algorithms for connectomics", Frontiers in Neuroanatomy 9:142, 2015.
    O. Ronneberger, P. Fischer and T. Brox, "U-Net: Convolutional Networks for
    Biomedical Image Segmentation", MICCAI 2015 (arXiv:1505.04597).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
from PIL import Image

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

__all__ = [
    "ISBI_SHA256",
    "ISBI_URLS",
    "ISBI_URL",
    "ISBI_URLS_ENV",
    "isbi_urls",
    "ISBI_DIRNAME",
    "ISBI_SPLIT",
    "isbi_folder",
    "ensure_isbi",
    "load_isbi",
    "main",
]

_REPOSITORY, _COMMIT, _FOLDER = "zhixuhao/unet", "b45af4d458437d8281cc218a07fd4380818ece4a", "data/membrane/train"
# The same commit's files at two hosts, tried in this order; ``{path}`` is a key of ISBI_SHA256.
# Every copy is checked against the same checksums, so a mirror can fail but never mislead.
ISBI_URLS: tuple[str, ...] = (
    f"https://raw.githubusercontent.com/{_REPOSITORY}/{_COMMIT}/{_FOLDER}/{{path}}",
    f"https://cdn.jsdelivr.net/gh/{_REPOSITORY}@{_COMMIT}/{_FOLDER}/{{path}}",
)
ISBI_URL = ISBI_URLS[0]  # the primary address, kept for code written before the mirror
ISBI_URLS_ENV = "UNET_LESSONS_ISBI_URLS"
ISBI_DIRNAME = "isbi2012-em"
ISBI_NUM_SLICES = 30

# The 30 slices are consecutive serial sections, so neighbouring slices are nearly
# identical. A random split would put near-copies of every validation slice into
# training and report a flattering score; holding out one contiguous block (the last
# five slices) keeps validation honest. Only the two slices at the seam are neighbours.
ISBI_SPLIT: dict[str, tuple[int, ...]] = {"train": tuple(range(0, 25)), "val": tuple(range(25, 30))}

# Copied from SHA256SUMS of the reference copy (``sha256sum -c`` format there).
ISBI_SHA256: dict[str, str] = {
    "image/0.png": "12c0ed6f42fc09f512abf6b354f217c950e4c8223b57a0315449b62a14556523",
    "image/1.png": "2cfc7ee635a6f85d5faf5c82a71d3a37bf5af4784b554964e3e07193e3ee2166",
    "image/2.png": "fe60d8d4f93102666a23a18d718b4b59fab8e616987d11c5072f4a87fac7301f",
    "image/3.png": "636d16cbb02f99dda4c9fb6db98dfba066142afa981ffdcfaf54453982e8250c",
    "image/4.png": "991fb3a8e4abc73da1d6159ca28fa4397f0a8351f30a8ba3669c86414d2ce239",
    "image/5.png": "7e9d9fb787664336d6f2cd68b23986f04527e7f8f494410983b4d70c6de1de3b",
    "image/6.png": "7c0a87933ffc72f4ff02f5996d9c3f69fe9a0b5277507415743ad8afb5e5d308",
    "image/7.png": "19f2c25716107d41008c83ba8a814ae47a090e00dea766dde38dce1f00899270",
    "image/8.png": "a8979e4abd1a10af9ca75e614d97875659adbd8ee3a68eba483bf556cfe3023d",
    "image/9.png": "730ebf435ab0f6e625d342552ad03736799fd660d0c6af744674c61a46aa082a",
    "image/10.png": "7c3717bcd48c4b7e5c878d7f0b809b8687a4e6fac471f3863de320a82ee72b8a",
    "image/11.png": "dd7857b25ca1417f87c282750e22c50947f75e81fa032d4e0c96b902c9dc9757",
    "image/12.png": "9f8eff9239bb764d51524a998387a7babcff9f62161804651b030b81aabd5ab8",
    "image/13.png": "377e5cdbcd7f0ac7336f482fc7ead7446887863f26769b3841fe98aadca77dad",
    "image/14.png": "f50d2d77acd2df564c5f0f40b1b24cd929f5944460aa4cd90c422cb5cef33a59",
    "image/15.png": "3e13fdea09accc14f46fb2f3ffa1e882cdd9c53b28a6842c4c10229692c7d1a4",
    "image/16.png": "ffc951c12450f94129582c16fd0d4b165c4a31469b0c42d966f07c183d3132e2",
    "image/17.png": "0f4f7e8e0619e4c7d517ac68d3789a3b6248253747717eac418bb7d32bef4de3",
    "image/18.png": "1bb1edd50595861743d14e1955dfa5d3c9395fb87563eca6dc81433bf9df49de",
    "image/19.png": "999b55633f8d7082add72082656e9532c5c3d97203b376eb317f09ba88a5a5b7",
    "image/20.png": "9153d14bfd15955fab576ea23281c4f23104b45dceed6e03e0b254607f50a1b2",
    "image/21.png": "9ad07cf4f67984f17a08aa63e6d92d395ce55f5132e6ff4fa6d95d6890ea7f97",
    "image/22.png": "6278609b4c42a7cb43212de0e2e2ceded758bafe0856fb56214ce658a61668e4",
    "image/23.png": "9ef4e9fbc838b9791af83a36918d729a0ea2e90ebc71c4a3c4554059f9379756",
    "image/24.png": "f0f917b9c3e9c96d16ea287aff9b05ecf4de88bc61d478e4aefcb64932fba70c",
    "image/25.png": "e0154737e76392e8bf94fb2c0dfa5ddad4b53aeec942a0a8cdd8ba63443e6072",
    "image/26.png": "d0ff11e09b0ee0c817334946e746a38ab621161d5f9c46af95c68b851f8d9a1a",
    "image/27.png": "eed8e8bee1db8fe7af39b5b43ecf14282c5c33eca0959726eea06f662027eacc",
    "image/28.png": "974df4b51e8905bdaabe61e80496cbf331f5c9aa9ddc2cb94113f58c2b7d2837",
    "image/29.png": "d9ae868509c610a69acbf3d69cde4f36a8e344cbbc444f93c917bf7b9f3e784f",
    "label/0.png": "13b67edd7607a1f284c09170c96a27d38422b0ffaf88024ea5b689acb5e1b4b0",
    "label/1.png": "cff60a00de2901e67165c91d7708d784e4c5bcc9d1c8c677922c905d63bbc3d1",
    "label/2.png": "a578af998c017f56763b81941c4dc612dde5731809b2cea0e8ebc37aecb84dbb",
    "label/3.png": "c8ae3b843fed02e09411a24c10850160922c331041b17c2674025f05a99b8834",
    "label/4.png": "a2f19c01b5d982a97923a0d29e64127a05e3f496731480ac9d9d302b5427f7ff",
    "label/5.png": "2dd5779118f6f4d87f88ec112f1cea20663b50acb8c748b0db1f23eda82b5118",
    "label/6.png": "2b0984e9f31fb41d4c5f4a754a3e080036b7321a0cbd9591a62010d20a574ce7",
    "label/7.png": "2ebc8c835999589bfd7d80d81f83d24e5c41138362b0faafef0f009e1ce82144",
    "label/8.png": "db979010ca4fbdb38c8b32d455aed0da90d598153f2a0046b63d02a6efa32b9e",
    "label/9.png": "8ee6c79adbb740595c4d61776e065e7164c00d52c7dd7562b5279041e7f3567b",
    "label/10.png": "b0156cc8186b0ee521927ac95645b406a42d27564607a6fea3a59c34add78f7c",
    "label/11.png": "e47b3aa0cfb3106476af1666e631d45bd16dbf2aff88260ee65d16e4134332db",
    "label/12.png": "85a7a899c0b72b81633ad122887ba5161d650385d7775a5b3074eb00131b3620",
    "label/13.png": "88549c22fd647312d6b37e17d33e90800d347d60ccb1156a8dde5e67394f9f3d",
    "label/14.png": "bcd775017eb4fdbdfe7ad6cc6420b2f16aa9d0576894d08370edcf564b46680a",
    "label/15.png": "59a854887b504ff00a5b4b93b2299bbc0bf0cbe54dea58d2b31969229b28b369",
    "label/16.png": "b34eb88cdc3313a6f4190f5753465df7f69d8f3c243a5c25427b1b99ecfe2499",
    "label/17.png": "4fa076cbeb744803d987dc46cf308dc3026408e7a5188838e30e25fe3ea67dbe",
    "label/18.png": "bd009dda57f204804732f592ed1d41ba18961d83c492413fe71548efa4a288d9",
    "label/19.png": "bf38407c55b6033c1677230228ecb100a11294aa74a7b92e5edfdc4abadcfef9",
    "label/20.png": "7af7296f2e892866669d4e4f9c0d4178987e6ec6e7d0751ec238d1bbe2da9c55",
    "label/21.png": "772c722acb2eac01769b53fa5037a3d62745e53102398bf9b2202df605cadda4",
    "label/22.png": "b19f5533ec24077a2395a085fe53af75dd350ef03798c4ff40ba9ebecb2ee0ad",
    "label/23.png": "2d8f1df5c9ee83e59eb2d709eb153b0570f12e726690f586154b01b0a88bb540",
    "label/24.png": "6ab02d922b5c937ecfe2a479be87a5d3e5ef950dc48da09d31f37b47d899ca9c",
    "label/25.png": "c5ea59aca7789dd507ac31c4a82bbd4c172f9e3544f8e040442c20d1dfa9e16d",
    "label/26.png": "b056fae9f358111b6c9e2494bdba645f206be581959b8d3763e97d62a65dd961",
    "label/27.png": "5be3823a57c82b632cead6eb09f438c6010a244dc0975f2a3e466f45d2c06840",
    "label/28.png": "c0b0e2a2b7aad46919d1afc980f7d5e39101fb07948ce65d9cac802d8b47682e",
    "label/29.png": "1e8839a97178914171defd6a97158f06fcac1fc3f0d45f2acdff9c49ab3fced9",
}

ISBI_FILES: tuple[str, ...] = tuple(ISBI_SHA256)
_DOWNLOAD_MB = 6


def isbi_folder(root: Union[str, os.PathLike, None] = None) -> Path:
    """The dataset folder, ``root / "isbi2012-em"``; ``root`` defaults to :func:`data_root`."""
    base = Path(root).expanduser().resolve() if root is not None else data_root()
    return base / ISBI_DIRNAME


def _list(names: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(str(name) for name in names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _corrupt_message(corrupt: list[tuple[Path, str, str]]) -> str:
    path, expected, actual = corrupt[0]
    message = (
        f"{path} is corrupt or not the expected ISBI 2012 file.\n"
        f"  expected SHA-256: {expected}\n"
        f"  actual SHA-256:   {actual}\n"
        f"  fix: delete that file and re-run to download it again "
        f"(or copy it again from a good copy of the dataset)."
    )
    if len(corrupt) > 1:
        others = _list([str(path) for path, _, _ in corrupt[1:]])
        message += f"\n  {len(corrupt) - 1} more files fail the check too: {others}."
    return message


def _missing_message(folder: Path, missing: list[str], reason: str) -> str:
    return (
        f"The ISBI 2012 EM dataset is not complete: {len(missing)} of {len(ISBI_FILES)} files are missing "
        f"({_list(missing)}).\n"
        f"  folder searched: {folder}\n"
        f"  downloads are off ({reason}).\n"
        f"  fix: set {DATA_ENV} to a folder that contains {ISBI_DIRNAME}/ (or pass root=that folder); "
        f"or, online, run `python -m unet_lessons.data.isbi` once to download it (about {_DOWNLOAD_MB} MB)."
    )


def isbi_urls() -> tuple[str, ...]:
    """The address patterns to try, in order: ``UNET_LESSONS_ISBI_URLS`` if set, else :data:`ISBI_URLS`.

    The variable holds patterns separated by spaces, each with ``{path}`` where a file's
    name (``image/0.png``) goes, e.g. a copy on a local server.
    """
    override = os.environ.get(ISBI_URLS_ENV, "").split()
    if not override:
        return tuple(ISBI_URLS)
    bad = [pattern for pattern in override if "{path}" not in pattern]
    if bad:
        raise DataError(
            f"{ISBI_URLS_ENV} holds addresses without {{path}}: {_list(bad)}.\n"
            f"  fix: write each address with {{path}} where the file name goes, e.g. "
            f"http://server/isbi/{{path}} for http://server/isbi/image/0.png; or unset {ISBI_URLS_ENV}."
        )
    return tuple(override)


def _download_one(relative: str, dest: Path) -> None:
    """Fetch one file from the first address that serves it intact; raise naming every address if none does."""
    failures: list[tuple[str, DataError]] = []
    for pattern in isbi_urls():
        url = pattern.replace("{path}", relative)  # not str.format: a user's address may hold other braces
        try:
            download_file(url, dest, ISBI_SHA256[relative])
            return
        except (DownloadError, ChecksumError) as error:  # the next address may serve it; DataError (disk) may not
            failures.append((url, error))
    tried = "".join(f"\n  {i}. {url}\n     why: {error.reason}." for i, (url, error) in enumerate(failures, 1))
    message = (
        f"Could not download the ISBI 2012 file {relative} from "
        f"{'its one address' if len(failures) == 1 else f'any of its {len(failures)} addresses'}:{tried}\n"
        f"  fix: connect to the internet and re-run; or copy the file by hand to {dest}; or set {DATA_ENV} "
        f"to a folder that already holds {ISBI_DIRNAME}/; or set {ISBI_URLS_ENV} to addresses that serve "
        f"these files (with {{path}} where the file name goes)."
    )
    # Every address answered with wrong bytes: the files there changed, not the network.
    kind = ChecksumError if all(isinstance(error, ChecksumError) for _, error in failures) else DownloadError
    raise kind(message) from failures[-1][1]


def _check_writable(folder: Path, num_missing: int) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise DatasetNotFoundError(
            f"{num_missing} ISBI 2012 files are missing and cannot be downloaded: the folder {folder} "
            f"is not writable ({error}).\n"
            f"  fix: set {DATA_ENV} to a writable folder (or one that already contains {ISBI_DIRNAME}/), "
            f"or make {folder} writable."
        ) from error


def ensure_isbi(root: Union[str, os.PathLike, None] = None, *, download: Optional[bool] = None) -> Path:
    """Make sure the ISBI 2012 training set is complete and intact; return its folder.

    Every file is checked against :data:`ISBI_SHA256` (60 files of ~100 KB: milliseconds).
    Missing files are downloaded, each verified before it gets its final name.

    Args:
        root: the folder that holds ``isbi2012-em/``; defaults to :func:`data_root`
            (the environment variable ``UNET_LESSONS_DATA``, the checkout's ``data/``
            or ``~/.cache/unet-lessons``).
        download: whether missing files may be downloaded. ``None`` means yes, unless
            the environment variable ``UNET_LESSONS_OFFLINE`` is ``1``.

    Returns:
        The dataset folder, ``root / "isbi2012-em"``.

    Raises:
        ChecksumError: a file on disk has the wrong SHA-256 (named in the message), or
            every address served wrong bytes for a missing file.
        DatasetNotFoundError: files are missing and downloads are off, or the folder is
            not writable.
        DownloadError: a file could not be downloaded from any address in
            :func:`isbi_urls` (no network, host unreachable, HTTP error, ...).
    """
    folder = isbi_folder(root)
    missing: list[str] = []
    corrupt: list[tuple[Path, str, str]] = []
    for relative, expected in ISBI_SHA256.items():
        path = folder / relative
        if not path.is_file():
            missing.append(relative)
            continue
        actual = sha256_file(path)
        if actual != expected:
            corrupt.append((path, expected, actual))
    if corrupt:
        raise ChecksumError(_corrupt_message(corrupt))
    if not missing:
        return folder

    if download is None:
        allowed, reason = not offline_requested(), f"{OFFLINE_ENV}={os.environ.get(OFFLINE_ENV, '')}"
    else:
        allowed, reason = download, "download=False"
    if not allowed:
        raise DatasetNotFoundError(_missing_message(folder, missing, reason))
    _check_writable(folder, len(missing))
    isbi_urls()  # a malformed override fails here, before anything is fetched
    for done, relative in enumerate(missing):
        try:
            _download_one(relative, folder / relative)
        except (DownloadError, ChecksumError) as error:
            raise type(error)(
                f"{error}\n  ({done} of the {len(missing)} missing ISBI 2012 files were downloaded into "
                f"{folder} before this failure; re-running fetches the rest.)"
            ) from error
    return folder


def _split_indices(split: Optional[str]) -> tuple[int, ...]:
    if split is None:
        return tuple(range(ISBI_NUM_SLICES))
    if split not in ISBI_SPLIT:
        raise ValueError(f"split must be None (all {ISBI_NUM_SLICES} slices) or one of {sorted(ISBI_SPLIT)}; "
                         f"got {split!r}.")
    return ISBI_SPLIT[split]


def _read_png(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image.load()
            pixels = np.array(image if image.mode == "L" else image.convert("L"))
    except (OSError, SyntaxError, ValueError) as error:  # PIL's ways of saying "not a readable PNG"
        raise DataError(
            f"Cannot read {path} as an image ({type(error).__name__}: {error}).\n"
            f"  fix: delete that file and re-run to download it again (or copy it again from a good copy)."
        ) from error
    return pixels


def load_isbi(
    root: Union[str, os.PathLike, None] = None,
    *,
    download: Optional[bool] = None,
    split: Optional[str] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Load the ISBI 2012 training slices and their labels as arrays (verifying, downloading if needed).

    Args:
        root: the folder that holds ``isbi2012-em/``, see :func:`ensure_isbi`.
        download: see :func:`ensure_isbi`.
        split: ``None`` for all 30 slices, ``"train"`` (slices 0-24) or ``"val"``
            (slices 25-29), see :data:`ISBI_SPLIT`.

    Returns:
        ``(images, labels)``: images float32 in [0, 1]; labels int64 with
        1 = cell interior (PNG value 255) and 0 = membrane (PNG value 0).

    Shape:
        images (N, 512, 512), labels (N, 512, 512); N = 30, 25 or 5.
    """
    indices = _split_indices(split)  # before ensure_isbi, so a typo never starts a download
    folder = ensure_isbi(root, download=download)
    images = np.stack([_read_png(folder / "image" / f"{i}.png") for i in indices])  # (N, H, W) uint8
    labels = np.stack([_read_png(folder / "label" / f"{i}.png") for i in indices])  # (N, H, W) uint8
    if images.shape != labels.shape:
        raise DataError(f"ISBI images {images.shape} and labels {labels.shape} in {folder} do not match; "
                        f"re-copy the dataset.")
    return images.astype(np.float32) / 255.0, (labels > 127).astype(np.int64)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: ``python -m unet_lessons.data.isbi [--root FOLDER] [--offline]``.

    Downloads what is missing (unless offline), verifies every checksum and prints
    where the data is. Returns the exit code: 0 on success, 1 with a message otherwise.
    """
    parser = argparse.ArgumentParser(
        prog="python -m unet_lessons.data.isbi",
        description="Download (if needed) and verify the ISBI 2012 EM training set.",
    )
    parser.add_argument("--root", help=f"folder that holds or will hold {ISBI_DIRNAME}/ "
                                       f"(default: ${DATA_ENV}, the checkout's data/, or ~/.cache/unet-lessons)")
    parser.add_argument("--offline", action="store_true", help="never download; only verify what is there")
    args = parser.parse_args(argv)
    try:
        folder = ensure_isbi(args.root, download=False if args.offline else None)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"ISBI 2012 EM training set: {ISBI_NUM_SLICES} images and {ISBI_NUM_SLICES} labels, "
          f"all SHA-256 checksums match.\n  folder: {folder}")
    if args.root is not None and isbi_folder().resolve() != folder.resolve():
        print(f"  to use it by default: export {DATA_ENV}={folder.parent.resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
