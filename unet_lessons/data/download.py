"""Where datasets live, and how one file gets there: checksummed, atomic downloads.

A download goes to a temporary ``<name>.<random>.part`` file beside its destination,
is checked against a known SHA-256, and only then is renamed onto the destination
(``os.replace`` is atomic on one file system). So a file under its final name is
always complete and correct; an interrupted or corrupted download leaves nothing
behind, and the next run simply tries again.

Only the standard library is used (``urllib.request``), so the lessons need no extra
dependency to fetch their data.
"""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile
import urllib.error
import urllib.request
from http.client import HTTPException
from pathlib import Path
from typing import Callable, Optional, Union
from urllib.parse import urlparse

__all__ = [
    "DataError",
    "DatasetNotFoundError",
    "ChecksumError",
    "DownloadError",
    "DATA_ENV",
    "OFFLINE_ENV",
    "sha256_file",
    "data_root",
    "offline_requested",
    "download_file",
]

DATA_ENV = "UNET_LESSONS_DATA"
OFFLINE_ENV = "UNET_LESSONS_OFFLINE"

_CHUNK_BYTES = 1 << 16
# Everything an opener or a half-read response raises when the network lets us down.
# URLError (and HTTPError) subclass OSError; IncompleteRead is an HTTPException.
_NETWORK_ERRORS = (urllib.error.URLError, socket.timeout, ConnectionError, HTTPException, OSError)


class DataError(RuntimeError):
    """Base class of every dataset problem; the message always says how to fix it.

    Args:
        message: what is wrong and what to do.
        reason: the cause alone, in one line, for a message that gathers several failures
            (such as one file tried at several addresses); defaults to the message's first line.
    """

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message.split("\n", 1)[0]


class DatasetNotFoundError(DataError):
    """The dataset's files are not on disk and cannot be downloaded now."""


class ChecksumError(DataError):
    """A file's SHA-256 is not the expected one: a corrupt or different file."""


class DownloadError(DataError):
    """A download failed: no network, host unreachable, timeout or an HTTP error."""


def sha256_file(path: Union[str, os.PathLike]) -> str:
    """The SHA-256 hex digest of the file at ``path``, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def data_root() -> Path:
    """The folder that holds (or will hold) every dataset.

    In order: the environment variable ``UNET_LESSONS_DATA`` if set; the repository's
    own ``data/`` folder when the package runs from a checkout (a ``pyproject.toml``
    beside the package); otherwise ``~/.cache/unet-lessons``.
    """
    from_env = os.environ.get(DATA_ENV, "").strip()
    if from_env:
        return Path(from_env).expanduser().resolve()
    repository = Path(__file__).resolve().parents[2]  # .../unet_lessons/data/download.py -> checkout
    if (repository / "pyproject.toml").is_file() and (repository / "unet_lessons").is_dir():
        return repository / "data"
    return Path.home() / ".cache" / "unet-lessons"


def offline_requested() -> bool:
    """True when the environment variable ``UNET_LESSONS_OFFLINE`` asks for no downloads (``1``)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes")


def _network_cause(url: str, error: BaseException) -> str:
    host = urlparse(url).hostname or url
    if isinstance(error, urllib.error.HTTPError):
        return f"the server answered HTTP {error.code} ({error.reason}); the file may have moved"
    reason = getattr(error, "reason", None) or error
    return (f"{type(error).__name__}: {reason}. The machine seems to be offline, "
            f"or {host} is unreachable or too slow")


def _network_error(url: str, dest: Path, error: BaseException) -> DownloadError:
    cause = _network_cause(url, error)
    return DownloadError(
        f"Could not download {url}\n"
        f"  why: {cause}.\n"
        f"  fix: connect to the internet and re-run; or copy the file by hand to {dest}; "
        f"or set {DATA_ENV} to a folder that already holds the dataset.",
        reason=cause,
    )


def download_file(
    url: str,
    dest: Union[str, os.PathLike],
    sha256: str,
    *,
    timeout: float = 60.0,
    opener: Optional[Callable] = None,
) -> Path:
    """Download ``url`` to ``dest`` if and only if its SHA-256 is ``sha256``.

    The bytes go to a temporary ``.part`` file in ``dest``'s folder and are renamed onto
    ``dest`` after the checksum matches. On any failure (network error, timeout, checksum
    mismatch, Ctrl-C) the temporary file is removed and ``dest`` is left untouched.

    Args:
        url: what to fetch.
        dest: where the file ends up; its folder is created if needed.
        sha256: the expected hex digest (case-insensitive).
        timeout: seconds to wait for the connection and for each read.
        opener: ``opener(url, timeout=...)`` returning a response with ``read(n)``;
            defaults to ``urllib.request.urlopen``. Tests pass a fake here.

    Returns:
        ``dest`` as a ``Path``.

    Raises:
        DownloadError: the network or the server failed; the message says what to do.
        ChecksumError: the bytes arrived but are not the expected file.
        DataError: ``dest``'s folder cannot be created or written.
    """
    dest = Path(dest)
    open_url = opener if opener is not None else urllib.request.urlopen
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = tempfile.NamedTemporaryFile(dir=dest.parent, delete=False, prefix=dest.name + ".", suffix=".part")
    except OSError as error:
        raise DataError(
            f"Cannot write into {dest.parent} ({error}), so {url} cannot be downloaded there.\n"
            f"  fix: make that folder writable, or set {DATA_ENV} to a writable folder."
        ) from error
    part_path = Path(part.name)
    try:
        digest = hashlib.sha256()
        with part:
            try:
                response = open_url(url, timeout=timeout)
            except _NETWORK_ERRORS as error:
                raise _network_error(url, dest, error) from error
            try:
                while True:
                    try:
                        chunk = response.read(_CHUNK_BYTES)
                    except _NETWORK_ERRORS as error:  # the connection dropped midway
                        raise _network_error(url, dest, error) from error
                    if not chunk:
                        break
                    digest.update(chunk)
                    part.write(chunk)  # a full disk raises OSError here, outside the network handler
            finally:
                close = getattr(response, "close", None)
                if close is not None:
                    close()
        actual, expected = digest.hexdigest(), sha256.lower()
        if actual != expected:
            raise ChecksumError(
                f"The file downloaded from {url} is not the expected one.\n"
                f"  expected SHA-256: {expected}\n"
                f"  actual SHA-256:   {actual}\n"
                f"  fix: re-run (a proxy or a broken connection may have altered it); if it keeps "
                f"failing, the file at that address has changed: copy the dataset by hand or set "
                f"{DATA_ENV} to a folder that holds it.",
                reason=f"the bytes are not the expected file (SHA-256 {actual}, expected {expected})",
            )
        os.chmod(part_path, 0o644)  # NamedTemporaryFile makes it owner-only; a dataset is for everyone
        os.replace(part_path, dest)
    except BaseException:  # BaseException, so Ctrl-C leaves no .part file either
        part_path.unlink(missing_ok=True)
        raise
    return dest
