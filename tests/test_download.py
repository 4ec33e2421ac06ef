"""The `make data` step against a real local HTTP server serving a tiny archive."""

from __future__ import annotations

import functools
import hashlib
import io
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lstm_sentiment.data import download
from lstm_sentiment.data.download import (
    DEFAULT_URL,
    EXTRACTED,
    DownloadError,
    download_dataset,
    main,
)

TRAIN = b'"2","Great","Works as described."\n"1","Broken","Stopped after a day."\n'
TEST = b'"1","Meh","Not worth it."\n'
GOOD = {f"{EXTRACTED}/train.csv": TRAIN, f"{EXTRACTED}/test.csv": TEST}


def make_tgz(path: Path, members: dict[str, bytes], symlink: str | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink:
            link = tarfile.TarInfo(symlink)
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(link)
    return path


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/"srv" on 127.0.0.1; yields (base URL, list of requested paths)."""
    root = tmp_path / "srv"
    root.mkdir()
    requests: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=root))
    # A short poll keeps shutdown() (which waits for the next poll) from costing 0.5 s per test.
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root, requests
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def good(server):
    base, root, requests = server
    archive = make_tgz(root / f"{EXTRACTED}.tgz", GOOD)
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    return f"{base}/{archive.name}", sha, md5, requests


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir() if p.name.endswith(".part") or "extract" in p.name)


@pytest.mark.parametrize("algo", ["sha256", "md5"])
def test_downloads_verifies_and_extracts(tmp_path, good, algo):
    url, sha, md5, requests = good
    dest = tmp_path / "data"
    digest = {"sha256": sha} if algo == "sha256" else {"md5": md5.upper()}
    out = download_dataset(dest, url, progress=False, **digest)
    assert out == dest / EXTRACTED
    assert (out / "train.csv").read_bytes() == TRAIN
    assert (out / "test.csv").read_bytes() == TEST
    assert (dest / f"{EXTRACTED}.tgz").is_file()
    assert leftovers(dest) == []
    assert len(requests) == 1


def test_second_call_does_not_download_again(tmp_path, good):
    url, sha, _, requests = good
    dest = tmp_path / "data"
    download_dataset(dest, url, sha256=sha, progress=False)
    assert download_dataset(dest, url, sha256=sha, progress=False) == dest / EXTRACTED
    assert len(requests) == 1

    # Extracted files gone but the verified archive still there: unpack again, no download.
    (dest / EXTRACTED / "test.csv").unlink()
    download_dataset(dest, url, sha256=sha, progress=False)
    assert (dest / EXTRACTED / "test.csv").read_bytes() == TEST
    assert len(requests) == 1

    # A damaged archive is fetched again; --force always is.
    (dest / EXTRACTED / "test.csv").unlink()
    (dest / f"{EXTRACTED}.tgz").write_bytes(b"truncated")
    download_dataset(dest, url, sha256=sha, progress=False)
    assert len(requests) == 2
    download_dataset(dest, url, sha256=sha, force=True, progress=False)
    assert len(requests) == 3
    assert (dest / EXTRACTED / "train.csv").read_bytes() == TRAIN


def test_checksum_mismatch_leaves_nothing(tmp_path, good):
    url, sha, _, _ = good
    dest = tmp_path / "data"
    with pytest.raises(DownloadError) as err:
        download_dataset(dest, url, sha256="0" * 64, progress=False)
    message = str(err.value)
    assert f"expected {'0' * 64}" in message and f"got {sha}" in message
    assert not (dest / f"{EXTRACTED}.tgz").exists()
    assert not (dest / EXTRACTED).exists()
    assert leftovers(dest) == []


def test_http_404_gives_clear_error(tmp_path, server):
    base, _, _ = server
    dest = tmp_path / "data"
    url = f"{base}/missing.tgz"
    with pytest.raises(DownloadError) as err:
        download_dataset(dest, url, progress=False)
    message = str(err.value)
    assert "\n" not in message
    assert url in message and "404" in message
    assert "by hand" in message and "REVIEWS_DIR" in message
    assert leftovers(dest) == []


def test_default_url_is_checked_against_published_size_and_sha256(tmp_path, good, monkeypatch):
    url, _, _, requests = good
    assert DEFAULT_URL == "https://s3.amazonaws.com/fast-ai-nlp/amazon_review_polarity_csv.tgz"
    # Pretend the tiny archive is the real one: with no checksum given, the published size
    # rejects it from the Content-Length alone.
    monkeypatch.setattr(download, "DEFAULT_URL", url)
    with pytest.raises(DownloadError, match=f"expected {download.DEFAULT_SIZE}"):
        download_dataset(tmp_path / "data", url, progress=False)
    assert leftovers(tmp_path / "data") == []
    # Past the size check, the whole file is held to the published sha256.
    monkeypatch.setattr(download, "DEFAULT_SIZE", None)
    with pytest.raises(DownloadError, match=f"expected {download.DEFAULT_SHA256}"):
        download_dataset(tmp_path / "data", url, progress=False)
    assert len(requests) == 2


def test_cli_success_prints_paths(tmp_path, good, capsys):
    url, sha, _, _ = good
    dest = tmp_path / "data"
    assert main(["--dest", str(dest), "--url", url, "--sha256", sha]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(dest / EXTRACTED / "train.csv"), str(dest / EXTRACTED / "test.csv")]


@pytest.mark.parametrize("what", ["404", "checksum", "unreachable"])
def test_cli_failure_is_one_line_without_traceback(tmp_path, good, capsys, what):
    url, _, _, _ = good
    args = ["--dest", str(tmp_path / "data")]
    if what == "404":
        args += ["--url", url + ".nope"]
    elif what == "checksum":
        args += ["--url", url, "--md5", "f" * 32]
    else:
        args += ["--url", "http://127.0.0.1:9/x.tgz"]  # discard port: nothing listens
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ")
    assert not any("Traceback" in line for line in err)
    assert sum(line.startswith("error") for line in err) == 1


@pytest.mark.parametrize(
    "bad", [{"name": "../evil"}, {"name": "/tmp/evil-abs"}, {"name": "x/../../evil"}, {"link": "l"}]
)
def test_unsafe_archive_is_refused(tmp_path, server, bad):
    base, root, _ = server
    members = dict(GOOD)
    if "name" in bad:
        members[bad["name"]] = b"gotcha"
    archive = make_tgz(root / "evil.tgz", members, symlink=bad.get("link"))
    dest = tmp_path / "a" / "data"
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    with pytest.raises(DownloadError, match="unsafe archive member"):
        download_dataset(dest, f"{base}/evil.tgz", sha256=sha, progress=False)
    assert not (tmp_path / "a" / "evil").exists() and not (dest / "evil").exists()
    assert not Path("/tmp/evil-abs").exists()
    assert not (dest / EXTRACTED).exists()
    assert leftovers(dest) == []
