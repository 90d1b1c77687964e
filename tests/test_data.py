"""Tests for unet_lessons.data: downloads, the ISBI 2012 loader, the synthetic task and the patch sampler.

No test touches the network: downloads go through a fake opener or a local HTTP server on
127.0.0.1, and the ISBI tests use a small fake dataset with patched checksums (plus the
real shared copy when it sits beside the checkout).
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import shutil
import socket
import threading
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import unet_lessons.data as data
from unet_lessons.data import isbi
from unet_lessons.data import (
    ChecksumError,
    DataError,
    DatasetNotFoundError,
    DownloadError,
    PatchSampler,
    SyntheticCells2D,
    data_root,
    download_file,
    make_cells_2d,
    sha256_file,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
URL = "https://example.org/files/sample.bin"


@pytest.fixture(autouse=True)
def _no_data_environment(monkeypatch):
    """`make test` exports UNET_LESSONS_DATA and UNET_LESSONS_OFFLINE; each test sets what it needs."""
    monkeypatch.delenv("UNET_LESSONS_DATA", raising=False)
    monkeypatch.delenv("UNET_LESSONS_OFFLINE", raising=False)
    monkeypatch.delenv("UNET_LESSONS_ISBI_URLS", raising=False)  # a user's own mirror list must not leak in


# ----------------------------------------------------------------------------- downloads

class FakeResponse:
    """A urlopen response that hands out ``payload`` in small chunks and can fail midway."""

    def __init__(self, payload: bytes, fail_after: int | None = None, error: BaseException | None = None):
        self.stream, self.fail_after = io.BytesIO(payload), fail_after
        self.error = error or ConnectionResetError("connection reset by peer")
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        if self.fail_after is not None and self.stream.tell() >= self.fail_after:
            raise self.error
        return self.stream.read(min(n, 1000) if n > 0 else 1000)

    def close(self) -> None:
        self.closed = True


def fake_opener(payload: bytes, **kwargs):
    responses = []

    def opener(url, timeout):
        responses.append(FakeResponse(payload, **kwargs))
        return responses[-1]

    opener.responses = responses
    return opener


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


PAYLOAD = bytes(range(256)) * 40  # 10 KB, several chunks
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_sha256_file(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(PAYLOAD)
    assert sha256_file(path) == PAYLOAD_SHA


def test_download_writes_the_verified_file(tmp_path):
    opener = fake_opener(PAYLOAD)
    dest = download_file(URL, tmp_path / "sub" / "sample.bin", PAYLOAD_SHA.upper(), opener=opener)
    assert dest == tmp_path / "sub" / "sample.bin"
    assert dest.read_bytes() == PAYLOAD
    assert leftovers(dest.parent) == ["sample.bin"]
    assert opener.responses[0].closed


def test_checksum_mismatch_leaves_nothing(tmp_path):
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as info:
        download_file(URL, tmp_path / "sample.bin", wrong, opener=fake_opener(PAYLOAD))
    message = str(info.value)
    assert URL in message and wrong in message and PAYLOAD_SHA in message
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("error", [urllib.error.URLError("[Errno -3] Temporary failure in name resolution"),
                                   socket.timeout("timed out"), ConnectionRefusedError("refused")],
                         ids=["URLError", "timeout", "refused"])
def test_network_failure_explains_the_fix_and_leaves_nothing(tmp_path, error):
    def opener(url, timeout):
        raise error

    with pytest.raises(DownloadError) as info:
        download_file(URL, tmp_path / "sample.bin", PAYLOAD_SHA, opener=opener)
    message = str(info.value)
    assert URL in message and "offline" in message and "example.org" in message
    assert "UNET_LESSONS_DATA" in message and "by hand" in message and "re-run" in message
    assert leftovers(tmp_path) == []


def test_failure_midway_through_the_read_leaves_nothing(tmp_path):
    dest = tmp_path / "sample.bin"
    dest.write_bytes(b"old")  # an existing file must survive a failed download untouched
    opener = fake_opener(PAYLOAD, fail_after=3000)
    with pytest.raises(DownloadError, match="connection reset"):
        download_file(URL, dest, PAYLOAD_SHA, opener=opener)
    assert leftovers(tmp_path) == ["sample.bin"] and dest.read_bytes() == b"old"
    assert opener.responses[0].closed


def test_keyboard_interrupt_leaves_nothing(tmp_path):
    opener = fake_opener(PAYLOAD, fail_after=2000, error=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        download_file(URL, tmp_path / "sample.bin", PAYLOAD_SHA, opener=opener)
    assert leftovers(tmp_path) == []


def test_unwritable_destination_is_a_clear_data_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match="Cannot write into"):
        download_file(URL, blocker / "sample.bin", PAYLOAD_SHA, opener=fake_opener(PAYLOAD))


@pytest.fixture
def local_server(tmp_path, monkeypatch):
    """A real HTTP server on 127.0.0.1 (random port) serving tmp_path/served; yields its base URL."""
    served = tmp_path / "served"
    served.mkdir()
    monkeypatch.setenv("no_proxy", "*")  # never send loopback requests to a proxy from the environment
    monkeypatch.setenv("NO_PROXY", "*")

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_with_the_default_opener_from_a_local_server(local_server, tmp_path):
    served, base = local_server
    (served / "sample.bin").write_bytes(PAYLOAD)
    dest = download_file(f"{base}/sample.bin", tmp_path / "out" / "sample.bin", PAYLOAD_SHA, timeout=10)
    assert dest.read_bytes() == PAYLOAD
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        download_file(f"{base}/missing.bin", tmp_path / "out" / "missing.bin", PAYLOAD_SHA, timeout=10)
    assert "UNET_LESSONS_DATA" in str(info.value)
    assert info.value.reason.startswith("the server answered HTTP 404")  # the cause alone, for gathered messages
    assert leftovers(tmp_path / "out") == ["sample.bin"]


def test_data_root_follows_the_environment_then_the_checkout(tmp_path, monkeypatch):
    monkeypatch.setenv("UNET_LESSONS_DATA", str(tmp_path))
    assert data_root() == tmp_path.resolve()
    monkeypatch.delenv("UNET_LESSONS_DATA")
    checkout = Path(data.__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file():
        assert data_root() == checkout / "data"
    else:
        assert data_root() == Path.home() / ".cache" / "unet-lessons"


# ----------------------------------------------------------------------------- ISBI 2012

def test_isbi_constants():
    assert len(isbi.ISBI_SHA256) == 60
    assert {f"{kind}/{i}.png" for kind in ("image", "label") for i in range(30)} == set(isbi.ISBI_SHA256)
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in isbi.ISBI_SHA256.values())
    assert set(isbi.ISBI_SPLIT["train"]).isdisjoint(isbi.ISBI_SPLIT["val"])
    assert sorted(isbi.ISBI_SPLIT["train"] + isbi.ISBI_SPLIT["val"]) == list(range(30))
    assert isbi.ISBI_URL == isbi.ISBI_URLS[0] and isbi.isbi_urls() == isbi.ISBI_URLS
    github, jsdelivr = isbi.ISBI_URLS  # the same repository and commit at both hosts
    commit = "b45af4d458437d8281cc218a07fd4380818ece4a"
    assert github == f"https://raw.githubusercontent.com/zhixuhao/unet/{commit}/data/membrane/train/{{path}}"
    assert jsdelivr == f"https://cdn.jsdelivr.net/gh/zhixuhao/unet@{commit}/data/membrane/train/{{path}}"


@pytest.mark.skipif(not (SHARED_DATA / "isbi2012-em" / "SHA256SUMS").is_file(),
                    reason=f"no shared ISBI copy at {SHARED_DATA}")
def test_isbi_checksums_match_the_shared_sha256sums():
    lines = (SHARED_DATA / "isbi2012-em" / "SHA256SUMS").read_text().split("\n")
    expected = dict(reversed(line.split()) for line in lines if line.strip())
    assert isbi.ISBI_SHA256 == expected


@pytest.fixture
def fake_isbi(tmp_path, monkeypatch):
    """A complete fake dataset of tiny PNGs at tmp_path/source/isbi2012-em, with ISBI_SHA256 patched to match."""
    folder = tmp_path / "source" / isbi.ISBI_DIRNAME
    rng = np.random.default_rng(0)
    sums = {}
    # Labels are mostly 0/255 like the real ones, with some grey to test the > 127 cut.
    for kind, values in (("image", np.arange(256)), ("label", np.array([0, 0, 100, 200, 255, 255]))):
        (folder / kind).mkdir(parents=True)  # images first, then labels: the order of the real ISBI_SHA256
        for i in range(30):
            path = folder / kind / f"{i}.png"
            Image.fromarray(rng.choice(values, (12, 10)).astype(np.uint8)).save(path)
            sums[f"{kind}/{i}.png"] = sha256_file(path)
    monkeypatch.setattr(isbi, "ISBI_SHA256", sums)
    return folder


def copying_opener(source: Path, requested: list):
    """An opener that serves ISBI URLs from a local folder: the download path without the network."""
    prefix = isbi.ISBI_URL.format(path="")

    def opener(url, timeout):
        requested.append(url)
        assert url.startswith(prefix)
        return FakeResponse((source / url[len(prefix):]).read_bytes())

    return opener


@pytest.fixture
def offline_downloads(monkeypatch):
    """Route isbi's downloads through download_file with a fake opener; returns a setter for the source."""
    requested: list[str] = []
    state = {}

    def fake_download(url, dest, sha256, **kwargs):
        return download_file(url, dest, sha256, opener=copying_opener(state["source"], requested))

    monkeypatch.setattr(isbi, "download_file", fake_download)

    def use(source: Path):
        state["source"] = source
        return requested

    return use


def test_load_isbi_from_a_complete_folder(fake_isbi):
    images, labels = isbi.load_isbi(fake_isbi.parent, download=False)
    assert images.shape == labels.shape == (30, 12, 10)
    assert images.dtype == np.float32 and labels.dtype == np.int64
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert set(np.unique(labels)) == {0, 1}
    first_label = np.array(Image.open(fake_isbi / "label" / "0.png"))
    assert (labels[0][first_label <= 100] == 0).all() and (labels[0][first_label >= 200] == 1).all()
    first_image = np.array(Image.open(fake_isbi / "image" / "0.png"))
    np.testing.assert_allclose(images[0], first_image / 255.0, atol=1e-6)
    assert len(isbi.load_isbi(fake_isbi.parent, download=False, split="train")[0]) == 25
    val_images, _ = isbi.load_isbi(fake_isbi.parent, download=False, split="val")
    np.testing.assert_array_equal(val_images, images[25:])


def test_environment_variable_points_at_the_dataset(fake_isbi, monkeypatch):
    monkeypatch.setenv("UNET_LESSONS_DATA", str(fake_isbi.parent))
    assert isbi.ensure_isbi(download=False) == fake_isbi.resolve()


def test_missing_files_offline_say_what_and_how_to_fix(fake_isbi, monkeypatch):
    (fake_isbi / "label" / "7.png").unlink()
    with pytest.raises(DatasetNotFoundError) as info:
        isbi.ensure_isbi(fake_isbi.parent, download=False)
    message = str(info.value)
    assert "label/7.png" in message and "1 of 60" in message and str(fake_isbi) in message
    assert "UNET_LESSONS_DATA" in message and "python -m unet_lessons.data.isbi" in message
    # download=None follows UNET_LESSONS_OFFLINE.
    monkeypatch.setenv("UNET_LESSONS_OFFLINE", "1")
    with pytest.raises(DatasetNotFoundError, match="UNET_LESSONS_OFFLINE=1"):
        isbi.load_isbi(fake_isbi.parent)


def test_empty_folder_offline_names_the_first_missing_files(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"60 of 60 files are missing \(image/0.png"):
        isbi.ensure_isbi(tmp_path, download=False)


def test_corrupted_file_is_named_with_both_hashes(fake_isbi):
    path = fake_isbi / "image" / "3.png"
    path.write_bytes(path.read_bytes()[:-5] + b"xxxxx")
    with pytest.raises(ChecksumError) as info:
        isbi.ensure_isbi(fake_isbi.parent, download=True)
    message = str(info.value)
    assert str(path) in message and isbi.ISBI_SHA256["image/3.png"] in message
    assert sha256_file(path) in message and "delete that file" in message


def test_unreadable_png_with_a_matching_checksum_is_a_data_error(fake_isbi, monkeypatch):
    path = fake_isbi / "image" / "4.png"
    path.write_bytes(b"not a png at all")
    monkeypatch.setitem(isbi.ISBI_SHA256, "image/4.png", sha256_file(path))
    with pytest.raises(DataError, match="4.png") as info:
        isbi.load_isbi(fake_isbi.parent, download=False)
    assert "delete that file" in str(info.value)


def test_missing_files_are_downloaded_and_verified(fake_isbi, tmp_path, offline_downloads):
    requested = offline_downloads(fake_isbi)
    root = tmp_path / "fresh"
    folder = isbi.ensure_isbi(root, download=True)
    assert folder == (root / isbi.ISBI_DIRNAME).resolve()
    assert sorted(requested) == sorted(isbi.ISBI_URL.format(path=p) for p in isbi.ISBI_SHA256)
    assert all(sha256_file(folder / p) == h for p, h in isbi.ISBI_SHA256.items())
    assert not list(folder.rglob("*.part"))
    requested.clear()
    isbi.load_isbi(root)  # complete now: nothing more is fetched
    assert requested == []


def test_only_the_missing_files_are_downloaded(fake_isbi, tmp_path, offline_downloads):
    requested = offline_downloads(fake_isbi)
    local = tmp_path / "local"
    shutil.copytree(fake_isbi, local / isbi.ISBI_DIRNAME)
    isbi.ensure_isbi(local, download=True)  # complete: nothing to do
    assert requested == []
    (local / isbi.ISBI_DIRNAME / "image" / "29.png").unlink()
    isbi.ensure_isbi(local, download=True)
    assert requested == [isbi.ISBI_URL.format(path="image/29.png")]


def test_a_failed_download_keeps_what_was_fetched(fake_isbi, tmp_path, monkeypatch):
    good = copying_opener(fake_isbi, [])
    calls = []

    def unreachable(url, timeout):
        raise urllib.error.URLError("Network is unreachable")

    def flaky_download(url, dest, sha256, **kwargs):  # the third file fails at every address
        calls.append(url)
        return download_file(url, dest, sha256, opener=unreachable if url.endswith("image/2.png") else good)

    monkeypatch.setattr(isbi, "download_file", flaky_download)
    root = tmp_path / "fresh"
    with pytest.raises(DownloadError) as info:
        isbi.ensure_isbi(root, download=True)
    assert "Network is unreachable" in str(info.value) and "2 of the 60" in str(info.value)
    assert calls[2:] == [pattern.format(path="image/2.png") for pattern in isbi.ISBI_URLS]
    folder = root / isbi.ISBI_DIRNAME
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == ["image/0.png",
                                                                                                   "image/1.png"]


# The mirrors, against real HTTP on 127.0.0.1: each file is tried at every configured address in
# turn. A tiny file set with its own checksums replaces ISBI_SHA256, and every request is checked
# to go to the loopback server, so nothing here can reach the real network.
MIRROR_FILES = {"image/0.png": b"first image " * 50, "image/1.png": b"second image " * 70, "label/0.png": b"label"}


@pytest.fixture
def isbi_mirrors(local_server, monkeypatch):
    """Serve MIRROR_FILES at <base>/good/, wrong bytes at <base>/corrupt/; returns (base, refused, use, requested).

    ``refused`` is an address pattern on a closed port; ``use(*patterns)`` sets ISBI_URLS.
    """
    served, base = local_server
    for relative, payload in MIRROR_FILES.items():
        for folder, content in (("good", payload), ("corrupt", payload[:-1] + b"!")):
            (served / folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (served / folder / relative).write_bytes(content)
    monkeypatch.setattr(isbi, "ISBI_SHA256", {p: hashlib.sha256(b).hexdigest() for p, b in MIRROR_FILES.items()})
    with socket.socket() as probe:  # a port that was free a moment ago and that nobody listens on now
        probe.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{probe.getsockname()[1]}/{{path}}"
    requested: list[str] = []

    def loopback_only(url, dest, sha256, **kwargs):
        assert url.startswith("http://127.0.0.1:"), url
        requested.append(url)
        return download_file(url, dest, sha256, timeout=10)  # the real opener, urllib.request.urlopen

    monkeypatch.setattr(isbi, "download_file", loopback_only)
    use = lambda *patterns: monkeypatch.setattr(isbi, "ISBI_URLS", patterns)  # noqa: E731
    return base, refused, use, requested


def downloaded(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("first", ["absent", "refused"], ids=["HTTP-404", "connection-refused"])
def test_isbi_falls_back_to_the_second_address(isbi_mirrors, tmp_path, first):
    base, refused, use, requested = isbi_mirrors
    first_pattern = f"{base}/absent/{{path}}" if first == "absent" else refused
    use(first_pattern, f"{base}/good/{{path}}")
    folder = isbi.ensure_isbi(tmp_path / "fresh", download=True)
    assert downloaded(folder) == MIRROR_FILES  # checked against ISBI_SHA256 before each got its name
    assert requested == [pattern.format(path=p) for p in MIRROR_FILES
                         for pattern in (first_pattern, f"{base}/good/{{path}}")]


def test_isbi_moves_on_from_an_address_that_serves_corrupt_bytes(isbi_mirrors, tmp_path):
    base, _, use, requested = isbi_mirrors
    use(f"{base}/corrupt/{{path}}", f"{base}/good/{{path}}")
    folder = isbi.ensure_isbi(tmp_path / "fresh", download=True)
    assert downloaded(folder) == MIRROR_FILES
    assert len(requested) == 2 * len(MIRROR_FILES)


def test_isbi_names_every_address_when_all_fail(isbi_mirrors, tmp_path):
    base, refused, use, requested = isbi_mirrors
    patterns = (f"{base}/absent/{{path}}", refused, f"{base}/corrupt/{{path}}")
    use(*patterns)
    root = tmp_path / "fresh"
    with pytest.raises(DownloadError) as info:
        isbi.ensure_isbi(root, download=True)
    message = str(info.value)
    urls = [pattern.format(path="image/0.png") for pattern in patterns]
    assert requested == urls  # the first file fails everywhere, so the others are never tried
    assert "image/0.png from any of its 3 addresses" in message
    lines = message.splitlines()
    for url, why in zip(urls, ("HTTP 404", "Connection refused", "not the expected file (SHA-256")):
        after = lines[lines.index(f"  {urls.index(url) + 1}. {url}") + 1]
        assert after.startswith("     why: ") and why in after, (url, after)
    assert "UNET_LESSONS_DATA" in message and "UNET_LESSONS_ISBI_URLS" in message and "by hand" in message
    assert "0 of the 3 missing" in message
    assert not [p for p in root.rglob("*") if p.is_file()]  # no file, no .part left behind


def test_isbi_corrupt_at_every_address_is_a_checksum_error(isbi_mirrors, tmp_path):
    base, _, use, _ = isbi_mirrors
    use(f"{base}/corrupt/{{path}}")
    with pytest.raises(ChecksumError, match="from its one address") as info:
        isbi.ensure_isbi(tmp_path / "fresh", download=True)
    assert isbi.ISBI_SHA256["image/0.png"] in str(info.value)


def test_isbi_addresses_from_the_environment(isbi_mirrors, tmp_path, monkeypatch):
    base, refused, use, requested = isbi_mirrors
    use(refused)  # the configured list would fail; the variable replaces it
    monkeypatch.setenv("UNET_LESSONS_ISBI_URLS", f"  {base}/absent/{{path}}\n{base}/good/{{path}} ")
    assert isbi.isbi_urls() == (f"{base}/absent/{{path}}", f"{base}/good/{{path}}")
    folder = isbi.ensure_isbi(tmp_path / "fresh", download=True)
    assert downloaded(folder) == MIRROR_FILES and not any(url.startswith(refused[:-6]) for url in requested)
    requested.clear()
    monkeypatch.setenv("UNET_LESSONS_ISBI_URLS", f"{base}/good/image/0.png")
    with pytest.raises(DataError, match=r"without \{path\}") as info:
        isbi.ensure_isbi(tmp_path / "other", download=True)
    assert "unset UNET_LESSONS_ISBI_URLS" in str(info.value) and requested == []


def test_unwritable_folder_says_so(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(DatasetNotFoundError, match="not writable") as info:
        isbi.ensure_isbi(blocker, download=True)
    assert "UNET_LESSONS_DATA" in str(info.value)


def test_invalid_split_fails_before_any_download(monkeypatch, tmp_path):
    monkeypatch.setattr(isbi, "download_file", lambda *a, **k: pytest.fail("must not download"))
    with pytest.raises(ValueError, match=r"\['train', 'val'\]"):
        isbi.load_isbi(tmp_path, split="test")


def test_command_line(fake_isbi, tmp_path, capsys):
    assert isbi.main(["--root", str(fake_isbi.parent), "--offline"]) == 0
    out = capsys.readouterr().out
    assert "checksums match" in out and str(fake_isbi.resolve()) in out
    assert f"export UNET_LESSONS_DATA={fake_isbi.parent.resolve()}" in out  # how to make it the default
    assert isbi.main(["--root", str(tmp_path / "empty"), "--offline"]) == 1
    assert "60 of 60 files are missing" in capsys.readouterr().err


@pytest.mark.skipif(not (SHARED_DATA / isbi.ISBI_DIRNAME).is_dir(),
                    reason=f"the shared ISBI copy is not at {SHARED_DATA} (the repo is not cloned beside shared/)")
def test_real_isbi_data_from_the_shared_copy():
    images, labels = isbi.load_isbi(SHARED_DATA, download=False)
    assert images.shape == labels.shape == (30, 512, 512)
    assert images.dtype == np.float32 and labels.dtype == np.int64
    assert 0.0 <= images.min() < 0.1 and 0.9 < images.max() <= 1.0
    assert set(np.unique(labels)) == {0, 1}
    assert 0.15 < (labels == 0).mean() < 0.3  # membrane fraction, about 0.22


# ----------------------------------------------------------------------------- synthetic

def best_threshold_membrane_dice(images: np.ndarray, labels: np.ndarray) -> float:
    """Membrane Dice of the best single intensity threshold, searched over every cut and both polarities."""
    values, membrane = images.ravel(), (labels.ravel() == 0)
    order = np.argsort(values, kind="stable")
    hits = np.cumsum(membrane[order])  # membrane pixels among the k darkest, k = 1..n
    count = np.arange(1, values.size + 1)
    total = membrane.sum()
    dark = 2 * hits / (count + total)  # "membrane = the k darkest pixels"
    bright = 2 * (total - hits) / (values.size - count + total)  # "membrane = all but the k darkest"
    return float(max(dark.max(), bright.max()))


def test_make_cells_is_deterministic_with_the_right_types():
    image, label = make_cells_2d(96, seed=3)
    again_image, again_label = make_cells_2d(96, seed=3)
    other_image, _ = make_cells_2d(96, seed=4)
    assert image.shape == label.shape == (96, 96)
    assert image.dtype == np.float32 and label.dtype == np.int64
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert set(np.unique(label)) == {0, 1}
    np.testing.assert_array_equal(image, again_image)
    np.testing.assert_array_equal(label, again_label)
    assert not np.array_equal(image, other_image)


def test_membranes_are_dark_and_the_task_is_no_toy():
    pairs = [make_cells_2d(128, seed=seed) for seed in range(8)]
    images, labels = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    assert 0.15 < (labels == 0).mean() < 0.3  # like ISBI's ~0.22
    assert images[labels == 0].mean() < images[labels == 1].mean() - 0.1
    # No global threshold does well: not on all 8 images at once, not even chosen per image.
    assert best_threshold_membrane_dice(images, labels) < 0.6
    assert np.mean([best_threshold_membrane_dice(i, l) for i, l in zip(images, labels)]) < 0.6


def test_make_cells_options():
    _, fewer = make_cells_2d(128, seed=0, num_cells=20)
    _, more = make_cells_2d(128, seed=0, num_cells=120)
    assert (fewer == 0).mean() < (more == 0).mean()
    _, thin = make_cells_2d(128, seed=0, membrane_width=1.5)
    _, thick = make_cells_2d(128, seed=0, membrane_width=4.0)
    assert (thin == 0).mean() < (thick == 0).mean()
    clean, _ = make_cells_2d(64, seed=0, noise=0.0)
    noisy, _ = make_cells_2d(64, seed=0, noise=1.0)
    assert np.abs(np.diff(clean, axis=1)).mean() < np.abs(np.diff(noisy, axis=1)).mean()
    big_image, big_label = make_cells_2d(256, seed=1)
    assert big_image.shape == big_label.shape == (256, 256)


def test_synthetic_dataset_items_are_reproducible():
    dataset = SyntheticCells2D(4, size=64, seed=5)
    assert len(dataset) == 4
    image, label = dataset[2]
    assert image.shape == (1, 64, 64) and image.dtype == torch.float32
    assert label.shape == (64, 64) and label.dtype == torch.int64
    again_image, again_label = dataset[2]
    assert torch.equal(image, again_image) and torch.equal(label, again_label)
    assert torch.equal(dataset[-1][0], dataset[3][0])
    assert not torch.equal(dataset[1][0], image)
    assert not torch.equal(SyntheticCells2D(4, size=64, seed=6)[2][0], image)
    with pytest.raises(IndexError):
        dataset[4]
    loader_batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert loader_batch[0].shape == (4, 1, 64, 64) and loader_batch[1].shape == (4, 64, 64)


# ----------------------------------------------------------------------------- sampler

def blocky_data(n=3, shape=(40, 48), seed=0):
    """Images equal to a blocky label map (plus 2), so crops and augmentation can be traced."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, 2, (n,) + tuple(s // 8 for s in shape), generator=g)
    for axis in range(1, len(shape) + 1):
        coarse = coarse.repeat_interleave(8, dim=axis)
    return (coarse.float() + 2).numpy(), coarse.numpy()


@pytest.mark.parametrize("image_shape, label_shape, patch, expected", [
    ((3, 40, 48), (3, 40, 48), 32, (1, 32, 32)),
    ((3, 2, 40, 48), (3, 40, 48), (16, 24), (2, 16, 24)),
    ((2, 12, 20, 24), (2, 12, 20, 24), (8, 16, 16), (1, 8, 16, 16)),
    ((2, 3, 9, 11, 13), (2, 9, 11, 13), 7, (3, 7, 7, 7)),
], ids=["2D", "2D-channels", "3D", "3D-odd-channels"])
def test_sampler_shapes(image_shape, label_shape, patch, expected):
    images, labels = np.random.rand(*image_shape).astype(np.float32), np.random.randint(0, 3, label_shape)
    x, y = next(PatchSampler(images, labels, patch, batch_size=4, elastic_sigma=3.0))
    assert x.shape == (4,) + expected and x.dtype == torch.float32
    assert y.shape == (4,) + expected[1:] and y.dtype == torch.int64


def test_sampler_is_deterministic_by_seed():
    images, labels = blocky_data()
    batches = [[next(s) for _ in range(3)] for s in (PatchSampler(images, labels, 24, 4, seed=1),
                                                     PatchSampler(images, labels, 24, 4, seed=1))]
    for (x1, y1), (x2, y2) in zip(*batches):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    other = next(PatchSampler(images, labels, 24, 4, seed=2))
    assert not torch.equal(batches[0][0][0], other[0])
    sampler = PatchSampler(images, labels, 24, 4, seed=1)
    next(sampler)
    sampler.reset()
    assert torch.equal(next(sampler)[0], batches[0][0][0])


def test_sampler_normalises_and_crops_real_windows():
    images, labels = blocky_data()
    sampler = PatchSampler(images, labels, (16, 24), 6, augment=False)
    assert sampler.mean == pytest.approx(images.mean(), rel=1e-5)
    assert sampler.std == pytest.approx(images.std(), rel=1e-5)
    x, y = next(sampler)
    raw = x[:, 0] * sampler.std + sampler.mean
    torch.testing.assert_close(raw, y.float() + 2)  # the image and label crops come from the same window
    tensor = torch.from_numpy(images)
    torch.testing.assert_close(sampler.normalize(tensor), (tensor - sampler.mean) / sampler.std)
    normalised = sampler.normalize(images)
    assert isinstance(normalised, np.ndarray) and normalised.dtype == np.float32
    fixed = PatchSampler(images, labels, 16, 2, mean=1.0, std=2.0, augment=False)
    x, y = next(fixed)
    torch.testing.assert_close(x[:, 0] * 2.0 + 1.0, y.float() + 2)


def test_sampler_augmentation_keeps_images_and_labels_aligned():
    images, labels = blocky_data(shape=(64, 64))
    sampler = PatchSampler(images, labels, 32, 8, elastic_sigma=6.0, mean=0.0, std=1.0)
    for _ in range(3):
        x, y = next(sampler)
        assert set(y.unique().tolist()) <= {0, 1}
        exact = (x[:, 0] == 2) | (x[:, 0] == 3)  # away from block edges, bilinear = nearest
        assert exact.float().mean() > 0.5
        assert torch.equal(x[:, 0][exact].long() - 2, y[exact])


def test_sampler_errors_are_clear():
    images, labels = blocky_data()
    with pytest.raises(ValueError, match="exceeds the image size"):
        PatchSampler(images, labels, 41, 2)
    with pytest.raises(ValueError, match="disagree"):
        PatchSampler(images, labels[:, :32], 16, 2)
    with pytest.raises(ValueError, match="disagree"):
        PatchSampler(images[:2], labels, 16, 2)
    with pytest.raises(ValueError, match="patch_size"):
        PatchSampler(images, labels, (16, 16, 16), 2)
    with pytest.raises(ValueError, match="integer class indices"):
        PatchSampler(images, labels.astype(np.float32), 16, 2)
    with pytest.raises(ValueError, match="batch_size"):
        PatchSampler(images, labels, 16, 0)


def test_public_names_are_exported():
    for name in data.__all__:
        assert getattr(data, name) is not None
    assert data.load_isbi is isbi.load_isbi


def test_patch_sampler_foreground_oversampling_finds_rare_structures():
    labels = np.zeros((3, 40, 40, 40), dtype=np.int64)
    labels[:, 30:33, 5:8, 20:23] = 1  # 27 foreground voxels of 64,000 per volume
    images = np.random.default_rng(0).random(labels.shape, dtype=np.float32)
    uniform = PatchSampler(images, labels, 12, 16, augment=False, seed=0)
    forced = PatchSampler(images, labels, 12, 16, augment=False, seed=0, foreground=1.0)
    hits = lambda sampler: sum(int((next(sampler)[1] > 0).flatten(1).any(1).sum()) for _ in range(5))  # noqa: E731
    assert hits(forced) == 80  # every patch holds foreground
    assert hits(uniform) < 40
    half = PatchSampler(images, labels, 12, 64, augment=False, seed=1, foreground=0.5)
    assert 16 < int((next(half)[1] > 0).flatten(1).any(1).sum()) < 56
    # Patches stay inside the volume and keep image and label aligned.
    x, y = next(PatchSampler(images, labels, 12, 8, augment=False, seed=2, foreground=1.0, mean=0.0, std=1.0))
    assert x.shape == (8, 1, 12, 12, 12) and y.shape == (8, 12, 12, 12)


def test_patch_sampler_without_foreground_keeps_its_stream():
    labels = np.random.default_rng(0).integers(0, 2, (2, 20, 20))
    images = labels.astype(np.float32)
    a = next(PatchSampler(images, labels, 8, 4, seed=3, foreground=0.0))
    b = next(PatchSampler(images, labels, 8, 4, seed=3))
    torch.testing.assert_close(a[0], b[0])
    with pytest.raises(ValueError, match="probability"):
        PatchSampler(images, labels, 8, 4, foreground=1.5)


def test_sampler_weights_move_with_the_image_and_leave_the_stream_alone():
    images, labels = blocky_data(shape=(64, 64))
    weights = images.astype(np.float32) * 1.5 + 0.25  # moved exactly as the image is, interpolation included
    plain = PatchSampler(images, labels, 32, 4, elastic_sigma=6.0, mean=0.0, std=1.0, seed=3)
    weighted = PatchSampler(images, labels, 32, 4, elastic_sigma=6.0, mean=0.0, std=1.0, seed=3, weights=weights)
    for _ in range(3):
        x, y = next(plain)
        batch = next(weighted)
        assert sorted(batch) == ["image", "label", "weight"]
        torch.testing.assert_close(batch["image"], x)  # the weights draw no random numbers of their own
        assert torch.equal(batch["label"], y)
        torch.testing.assert_close(batch["weight"], x[:, 0] * 1.5 + 0.25)
    # A weight map of ones stays ones through every augmentation: the unweighted loss, on the same patches.
    ones = next(PatchSampler(images, labels, 32, 4, elastic_sigma=6.0, seed=3, weights=np.ones_like(weights)))
    torch.testing.assert_close(ones["weight"], torch.ones(4, 32, 32))


def test_sampler_weight_errors_are_clear():
    images, labels = blocky_data()
    with pytest.raises(ValueError, match="labels' shape"):
        PatchSampler(images, labels, 16, 2, weights=np.ones(labels.shape[1:], np.float32))
    with pytest.raises(ValueError, match="non-negative"):
        PatchSampler(images, labels, 16, 2, weights=-np.ones(labels.shape, np.float32))
    with pytest.raises(ValueError, match="transform"):
        PatchSampler(images, labels, 16, 2, weights=np.ones(labels.shape, np.float32), transform=lambda d: d)
