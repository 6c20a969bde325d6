"""The local Hub stand-in, exercised through the real ``huggingface_hub`` client."""
import json
import urllib.error
import urllib.request

import pytest
from hub_server import HubServer, hub, set_offline  # noqa: F401  (hub is a fixture)
from huggingface_hub import ModelHubMixin, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

REPO = "acme/tiny"


def _folder(tmp_path, name, files):
    root = tmp_path / name
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def test_download_regular_lfs_and_nested_files(hub, tmp_path):
    files = {"config.json": b'{"a": 1}', "adapter.safetensors": bytes(range(256)) * 40, "sub/notes.txt": b"hi"}
    sha = hub.add_repo(REPO, _folder(tmp_path, "v1", files))
    for name, data in files.items():
        path = hf_hub_download(REPO, name)
        assert _read(path) == data
        assert f"/snapshots/{sha}/" in path
    # the safetensors file went through the LFS redirect to the "CDN" origin
    assert ("HEAD", f"/{REPO}/resolve/main/adapter.safetensors") in hub.requests
    assert any(method == "GET" and path.startswith("/cdn/") for method, path in hub.requests)


def test_revisions_and_commit_sha(hub, tmp_path):
    sha1 = hub.add_repo(REPO, _folder(tmp_path, "a", {"w.txt": b"one"}))
    sha2 = hub.add_repo(REPO, _folder(tmp_path, "b", {"w.txt": b"two"}), revision="v2")
    assert sha1 != sha2 and len(sha1) == 40
    assert _read(hf_hub_download(REPO, "w.txt")) == b"one"
    assert _read(hf_hub_download(REPO, "w.txt", revision="v2")) == b"two"
    assert _read(hf_hub_download(REPO, "w.txt", revision=sha2)) == b"two"
    # moving main keeps the old commit reachable by sha
    sha3 = hub.add_repo(REPO, _folder(tmp_path, "c", {"w.txt": b"three"}))
    assert _read(hf_hub_download(REPO, "w.txt")) == b"three"
    assert _read(hf_hub_download(REPO, "w.txt", revision=sha1)) == b"one"
    assert sha3 not in (sha1, sha2)


def test_cache_hits(hub, tmp_path):
    sha = hub.add_repo(REPO, _folder(tmp_path, "a", {"w.txt": b"one"}))
    first = hf_hub_download(REPO, "w.txt")
    # a cached commit sha needs no request at all; a branch name still costs one HEAD, but no GET
    n = len(hub.requests)
    assert hf_hub_download(REPO, "w.txt", revision=sha) == first
    assert len(hub.requests) == n
    assert hf_hub_download(REPO, "w.txt") == first
    assert hub.requests[n:] == [("HEAD", f"/{REPO}/resolve/main/w.txt")]
    hub.stop()
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(hub.url, timeout=5)
    assert hf_hub_download(REPO, "w.txt") == first  # server gone: falls back to the cache
    assert hf_hub_download(REPO, "w.txt", revision=sha) == first


def test_missing_repo_file_and_revision(hub, tmp_path):
    hub.add_repo(REPO, _folder(tmp_path, "a", {"w.txt": b"one"}))
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("acme/missing", "w.txt")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "missing.txt")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "w.txt", revision="nope")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "w.txt", revision="0" * 40)


def test_offline_mode(hub, tmp_path, monkeypatch):
    hub.add_repo(REPO, _folder(tmp_path, "a", {"w.txt": b"one", "x.txt": b"two"}))
    cached = hf_hub_download(REPO, "w.txt")
    set_offline(monkeypatch)
    n = len(hub.requests)
    assert hf_hub_download(REPO, "w.txt") == cached
    with pytest.raises(LocalEntryNotFoundError) as err:
        hf_hub_download(REPO, "x.txt")
    assert isinstance(err.value.__cause__, OfflineModeIsEnabled)
    assert len(hub.requests) == n
    set_offline(monkeypatch, False)
    assert _read(hf_hub_download(REPO, "x.txt")) == b"two"


def test_model_hub_mixin_from_pretrained(hub, tmp_path):
    class Toy(ModelHubMixin):
        def __init__(self, width: int = 0, adapter: bytes = b""):
            self.width, self.adapter = width, adapter

        @classmethod
        def _from_pretrained(cls, *, model_id, revision, cache_dir, force_download, local_files_only, token,
                             **model_kwargs):
            path = hf_hub_download(model_id, "adapter.safetensors", revision=revision, cache_dir=cache_dir,
                                   force_download=force_download, local_files_only=local_files_only, token=token)
            return cls(adapter=_read(path), **model_kwargs)

    hub.add_repo(REPO, _folder(tmp_path, "m", {"config.json": json.dumps({"width": 7}).encode(),
                                               "adapter.safetensors": b"\x00" * 100}))
    model = Toy.from_pretrained(REPO)
    assert (model.width, model.adapter) == (7, b"\x00" * 100)


def test_range_requests(tmp_path):
    with HubServer() as server:
        server.add_repo(REPO, _folder(tmp_path, "a", {"w.txt": b"0123456789"}))
        req = urllib.request.Request(f"{server.url}/{REPO}/resolve/main/w.txt", headers={"Range": "bytes=3-"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert (resp.status, resp.read(), resp.headers["Content-Range"]) == (206, b"3456789", "bytes 3-9/10")
