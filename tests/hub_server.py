"""A tiny in-process stand-in for the Hugging Face Hub, for tests that drive the real ``huggingface_hub`` client.

It serves ``HEAD``/``GET /{repo_id}/resolve/{revision}/{filename}`` the way huggingface.co does:

* regular files: ``200`` with ``X-Repo-Commit``, ``ETag`` (git blob sha1) and ``Content-Length``;
* LFS files (:attr:`HubServer.LFS_SUFFIXES`, e.g. ``*.safetensors``): ``302`` to a "CDN" on a second port with
  ``X-Linked-Etag`` (sha256) and ``X-Linked-Size``, as the Hub redirects to its storage host;
* ``Range: bytes=a-b`` (used by the client to resume) is honoured;
* errors: ``404`` with ``X-Error-Code: RepoNotFound`` / ``RevisionNotFound`` / ``EntryNotFound``, which the client
  turns into ``RepositoryNotFoundError`` / ``RevisionNotFoundError`` / ``RemoteEntryNotFoundError``.

Only the standard library is used. The client reads ``HF_ENDPOINT``, the cache location and ``HF_HUB_OFFLINE``
once, at import, so setting environment variables in a test is not enough: use :func:`use_endpoint`,
:func:`use_cache` and :func:`set_offline` (or the :func:`hub` fixture, which does the first two).
"""
from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

__all__ = ["HubServer", "use_endpoint", "use_cache", "set_offline", "hub"]

_RESOLVE = re.compile(r"^/(?P<repo>(?:datasets/|spaces/)?[^/]+(?:/[^/]+)?)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_CDN = re.compile(r"^/cdn/(?P<sha256>[0-9a-f]{64})$")
_TYPE_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


class HubServer:
    """Serve published folders as Hub repos on ``127.0.0.1`` (random free ports, background threads).

    ``requests`` logs every ``(method, path)`` received, in order, so a test can assert what was (not) fetched.
    Use as ``with HubServer() as hub: url = hub.url`` or call :meth:`start` / :meth:`stop`.
    """

    LFS_SUFFIXES = frozenset({".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".h5", ".msgpack", ".npy",
                              ".npz", ".pkl", ".gz", ".zip", ".tar"})

    def __init__(self):
        self.requests: list[tuple[str, str]] = []
        self.url: str | None = None
        self._repos: dict[str, dict] = {}  # url key -> {"refs": {name: sha}, "commits": {sha: {path: bytes}}}
        self._blobs: dict[str, bytes] = {}  # sha256 -> content, served by the "CDN"
        self._servers: list[http.server.ThreadingHTTPServer] = []
        self._threads: list[threading.Thread] = []
        self._cdn_url: str | None = None

    def add_repo(self, repo_id: str, folder: str | Path, revision: str = "main", repo_type: str = "model") -> str:
        """Publish the files under ``folder`` (recursively, snapshotted now) as branch ``revision`` of ``repo_id``.

        Returns the 40-hex commit sha (deterministic from repo and content), which also works as a revision.
        Publishing again to the same branch moves it; older commits stay reachable by sha.
        """
        root = Path(folder)
        files = {p.relative_to(root).as_posix(): p.read_bytes()
                 for p in sorted(root.rglob("*")) if p.is_file() and ".git" not in p.relative_to(root).parts}
        digest = hashlib.sha1(f"{repo_type}:{repo_id}\n".encode())
        for path, data in files.items():
            digest.update(f"{path}\0{_git_sha1(data)}\n".encode())
        sha = digest.hexdigest()
        repo = self._repos.setdefault(_TYPE_PREFIX[repo_type] + repo_id, {"refs": {}, "commits": {}})
        repo["commits"][sha] = files
        repo["refs"][revision] = sha
        for path, data in files.items():
            if self._is_lfs(path):
                self._blobs[hashlib.sha256(data).hexdigest()] = data
        return sha

    def start(self) -> str:
        """Start serving; returns the endpoint URL (``http://127.0.0.1:PORT``), also kept as ``self.url``."""
        if self.url is None:
            hub_srv, cdn_srv = self._listen(), self._listen()  # the CDN is another origin, like the real one
            self.url = f"http://127.0.0.1:{hub_srv.server_address[1]}"
            self._cdn_url = f"http://127.0.0.1:{cdn_srv.server_address[1]}"
        return self.url

    def stop(self) -> None:
        """Stop serving: new connections to both ports are refused afterwards. Idempotent."""
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        for thread in self._threads:
            thread.join()
        self._servers, self._threads = [], []

    def __enter__(self) -> "HubServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------------------------------------

    def _is_lfs(self, path: str) -> bool:
        return Path(path).suffix.lower() in self.LFS_SUFFIXES

    def _listen(self) -> http.server.ThreadingHTTPServer:
        hub = self

        class Handler(_Handler):
            server_hub = hub

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        thread.start()
        self._servers.append(srv)
        self._threads.append(thread)
        return srv

    def _respond(self, path: str) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and (full) body for ``path``; the handler applies HEAD and Range."""
        match = _CDN.match(path)
        if match and match["sha256"] in self._blobs:
            return 200, {}, self._blobs[match["sha256"]]
        match = _RESOLVE.match(path)
        if not match:
            return _error(404, None, f"no route for {path}")
        repo = self._repos.get(match["repo"])
        if repo is None:
            return _error(404, "RepoNotFound", "Repository not found")
        revision, filename = unquote(match["rev"]), unquote(match["file"])
        sha = repo["refs"].get(revision) or (revision if revision in repo["commits"] else None)
        if sha is None:
            return _error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        data = repo["commits"][sha].get(filename)
        if data is None:
            status, headers, body = _error(404, "EntryNotFound", f"{filename} does not exist at {sha}")
            headers["X-Repo-Commit"] = sha
            return status, headers, body
        headers = {"X-Repo-Commit": sha}
        if self._is_lfs(filename):
            sha256 = hashlib.sha256(data).hexdigest()
            headers.update({"Location": f"{self._cdn_url}/cdn/{sha256}", "ETag": f'"{sha256}"',
                            "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(len(data))})
            return 302, headers, b""
        headers["ETag"] = f'"{_git_sha1(data)}"'
        return 200, headers, data


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: nothing lingers on a pooled socket after stop()
    server_hub: HubServer

    def do_HEAD(self):
        self._serve(head=True)

    def do_GET(self):
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        hub = self.server_hub
        hub.requests.append((self.command, self.path))
        status, headers, body = hub._respond(urlsplit(self.path).path)
        if status == 200:
            headers["Accept-Ranges"] = "bytes"
            start, end = _parse_range(self.headers.get("Range"), len(body))
            if start is not None:
                if start >= len(body) or start > end:
                    headers["Content-Range"] = f"bytes */{len(body)}"
                    status, body = 416, b""
                else:
                    status = 206
                    headers["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
                    body = body[start:end + 1]
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _error(status: int, code: str | None, message: str) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json", "X-Error-Message": message}
    if code:
        headers["X-Error-Code"] = code
    return status, headers, json.dumps({"error": message}).encode()


def _parse_range(header: str | None, size: int) -> tuple[int | None, int]:
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", (header or "").strip())
    if not match or match.groups() == ("", ""):
        return None, size - 1
    first, last = match.groups()
    if first == "":  # suffix range: the last N bytes
        return max(size - int(last), 0), size - 1
    return int(first), min(int(last), size - 1) if last else size - 1


# -- pytest helpers ------------------------------------------------------------------------------------------------

def use_endpoint(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Point the (already imported) ``huggingface_hub`` client at ``url`` for this test.

    ``hf_hub_url`` builds URLs from ``constants.HUGGINGFACE_CO_URL_TEMPLATE``, which is derived from ``HF_ENDPOINT``
    at import time, so both it and ``constants.ENDPOINT`` (used by ``HfApi``) are patched; ``HF_ENDPOINT`` is set
    too, for subprocesses. Telemetry is switched off as well: with it on, the first request of a process is a
    ``GET {ENDPOINT}/api/agent-harnesses`` (user-agent detection), which would show up in ``HubServer.requests``.
    """
    from huggingface_hub import constants

    url = url.rstrip("/")
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")


def use_cache(monkeypatch: pytest.MonkeyPatch, path: str | Path) -> Path:
    """Make ``path/hub`` the client's cache (``HF_HOME=path``) for this test; returns the hub cache dir.

    ``constants.HF_HUB_CACHE`` is what ``hf_hub_download`` reads when ``cache_dir`` is None; it too is frozen at
    import, so it is patched along with the environment.
    """
    from huggingface_hub import constants

    home = Path(path)
    cache = home / "hub"
    for name, value in {"HF_HOME": home, "HF_HUB_CACHE": cache, "HF_XET_CACHE": home / "xet",
                        "HF_ASSETS_CACHE": home / "assets"}.items():
        monkeypatch.setenv(name, str(value))
        monkeypatch.setattr(constants, name, str(value))
    return cache


def set_offline(monkeypatch: pytest.MonkeyPatch, offline: bool = True) -> None:
    """Turn ``HF_HUB_OFFLINE`` on (or off) for the already imported client, for this test.

    The client checks ``constants.HF_HUB_OFFLINE`` on every request (``constants.is_offline_mode()``), so patching
    it takes effect at once; the environment variable is set too, for subprocesses.
    """
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A started :class:`HubServer`, with the client pointed at it and caching under ``tmp_path/hf``.

    Import it into a test module (``from hub_server import hub``) and add repos with ``hub.add_repo``.
    """
    with HubServer() as server:
        use_endpoint(monkeypatch, server.url)
        use_cache(monkeypatch, tmp_path / "hf")
        yield server
