"""The local Hub stand-in, exercised through the real ``huggingface_hub`` client."""
import hashlib
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


# -- writing: the endpoints HfApi.create_repo / create_branch / upload_folder / create_commit use ----------------

def test_create_repo_and_upload_folder_regular_and_lfs(hub, tmp_path):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    url = api.create_repo(REPO)
    assert url.repo_id == REPO and url == f"{hub.url}/{REPO}"
    assert api.create_repo(REPO, exist_ok=True).repo_id == REPO
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(REPO)
    assert err.value.response.status_code == 409

    files = {"config.json": b'{"a": 1}', "w.safetensors": bytes(range(256)) * 40, "sub/notes.txt": b"hi",
             "README.md": b"---\nlicense: mit\n---\n# tiny\n"}
    info = api.upload_folder(repo_id=REPO, folder_path=_folder(tmp_path, "up", files), commit_message="first")
    assert len(info.oid) == 40 and info.commit_url == f"{hub.url}/{REPO}/commit/{info.oid}"
    stored = hub.files(REPO, info.oid)
    assert {k: v for k, v in stored.items() if k != ".gitattributes"} == files
    assert b"*.safetensors filter=lfs" in stored[".gitattributes"]  # the repo's initial commit
    # the safetensors file went through the LFS batch API and a PUT to the storage origin; the others inline
    sha256 = hashlib.sha256(files["w.safetensors"]).hexdigest()
    assert ("POST", f"/{REPO}.git/info/lfs/objects/batch") in hub.requests
    assert ("PUT", f"/cdn/upload/{sha256}") in hub.requests
    assert ("POST", f"/{REPO}.git/info/lfs/objects/verify") in hub.requests
    assert [m for m, p in hub.requests if p.startswith("/cdn/upload/")] == ["PUT"]
    # and reads back through the download path, by branch and by commit
    for name, data in files.items():
        assert _read(hf_hub_download(REPO, name)) == data
        assert _read(hf_hub_download(REPO, name, revision=info.oid)) == data

    # unchanged files make no commit (the client asks the preupload oids, then the revision's sha)
    n = len(hub.requests)
    again = api.upload_folder(repo_id=REPO, folder_path=tmp_path / "up")
    assert again.oid == info.oid
    assert not any("/cdn/upload/" in p or p.endswith("/commit/main") for _, p in hub.requests[n:])


def test_commits_keep_history_branches_and_deletions(hub, tmp_path):
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    api.create_repo(REPO)
    one = api.create_commit(REPO, [CommitOperationAdd("w.txt", b"one"), CommitOperationAdd("x.bin", b"\x01" * 9)],
                            commit_message="one")
    two = api.create_commit(REPO, [CommitOperationAdd("w.txt", b"two"), CommitOperationDelete("x.bin")],
                            commit_message="two", parent_commit=one.oid)
    assert api.model_info(REPO).sha == two.oid
    assert sorted(hub.files(REPO)) == [".gitattributes", "w.txt"]
    assert hub.files(REPO, one.oid)["x.bin"] == b"\x01" * 9  # the old commit is intact
    assert _read(hf_hub_download(REPO, "x.bin", revision=one.oid)) == b"\x01" * 9
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "x.bin")

    api.create_branch(REPO, branch="v1", revision=one.oid)
    fix = api.create_commit(REPO, [CommitOperationAdd("w.txt", b"one, fixed")], commit_message="fix",
                            revision="v1")
    assert _read(hf_hub_download(REPO, "w.txt", revision="v1")) == b"one, fixed"
    assert _read(hf_hub_download(REPO, "w.txt")) == b"two"
    assert api.model_info(REPO, revision="v1").sha == fix.oid

    with pytest.raises(HfHubHTTPError) as err:  # main moved on since `one`
        api.create_commit(REPO, [CommitOperationAdd("w.txt", b"late")], commit_message="late", parent_commit=one.oid)
    assert err.value.response.status_code == 412
    with pytest.raises(RevisionNotFoundError):
        api.create_commit(REPO, [CommitOperationAdd("w.txt", b"x")], commit_message="x", revision="nope")
    with pytest.raises(RepositoryNotFoundError):
        api.create_commit("acme/missing", [CommitOperationAdd("w.txt", b"x")], commit_message="x")
    with pytest.raises(ValueError, match="Invalid metadata in README.md"):
        api.create_commit(REPO, [CommitOperationAdd("README.md", b"---\nkey: [unclosed\n---\n")],
                          commit_message="bad card")
    assert api.model_info(REPO).sha == two.oid  # none of the refused commits landed


def test_lfs_upload_is_checked_against_its_sha256(tmp_path):
    with HubServer() as server:
        oid = hashlib.sha256(b"right").hexdigest()
        req = urllib.request.Request(f"{server._cdn_url}/cdn/upload/{oid}", data=b"wrong", method="PUT")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)
        assert err.value.code == 400
        req = urllib.request.Request(f"{server._cdn_url}/cdn/upload/{oid}", data=b"right", method="PUT")
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(f"{server._cdn_url}/cdn/{oid}", timeout=5) as resp:
            assert resp.read() == b"right"


def test_tree_listing_serves_snapshot_download(hub, tmp_path):
    from huggingface_hub import HfApi, snapshot_download

    files = {"config.json": b"{}", "adapter.safetensors": b"\0" * 300, "sub/notes.txt": b"hi"}
    sha = hub.add_repo(REPO, _folder(tmp_path, "a", files))
    tree = {e.path: e for e in HfApi().list_repo_tree(REPO, recursive=True)}
    assert tree["adapter.safetensors"].lfs.sha256 == hashlib.sha256(files["adapter.safetensors"]).hexdigest()
    assert tree["sub/notes.txt"].size == 2 and "sub" in tree
    folder = snapshot_download(REPO, local_dir=tmp_path / "copy")
    assert {p: _read(f"{folder}/{p}") for p in files} == files
    assert HfApi().model_info(REPO).sha == sha


def test_runs_by_hand_without_pytest(tmp_path):
    """``python -m hub_server --publish`` serves a folder that ``hf download`` fetches; no pytest imported."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    tests = str(Path(__file__).parent)
    probe = "import sys, hub_server; print('pytest' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], cwd=tests, capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
    folder = _folder(tmp_path, "a", {"config.json": b'{"a": 1}', "adapter.safetensors": b"\1" * 64})
    server = subprocess.Popen([sys.executable, "-m", "hub_server", "--publish", f"acme/byhand={folder}"], cwd=tests,
                              stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().split(" at ")[1].split(";")[0]
        env = dict(os.environ, HF_ENDPOINT=url, HF_HUB_DISABLE_XET="1", HF_TOKEN="hf_loopback",
                   HF_HOME=str(tmp_path / "hf"))
        hf = Path(sys.executable).with_name("hf")
        subprocess.run([str(hf), "download", "acme/byhand", "--local-dir", str(tmp_path / "got")], env=env,
                       check=True, capture_output=True, timeout=120)
        assert _read(tmp_path / "got" / "config.json") == b'{"a": 1}'
        assert _read(tmp_path / "got" / "adapter.safetensors") == b"\1" * 64
    finally:
        server.terminate()
        server.wait(timeout=30)
