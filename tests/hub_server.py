"""A tiny in-process stand-in for the Hugging Face Hub, for tests that drive the real ``huggingface_hub`` client.

Reading, as huggingface.co answers ``HEAD``/``GET /{repo_id}/resolve/{revision}/{filename}``:

* regular files: ``200`` with ``X-Repo-Commit``, ``ETag`` (git blob sha1) and ``Content-Length``;
* LFS files (:attr:`HubServer.LFS_SUFFIXES`, e.g. ``*.safetensors``): ``302`` to a "CDN" on a second port with
  ``X-Linked-Etag`` (sha256) and ``X-Linked-Size``, as the Hub redirects to its storage host;
* ``Range: bytes=a-b`` (used by the client to resume) is honoured;
* errors: ``404`` with ``X-Error-Code: RepoNotFound`` / ``RevisionNotFound`` / ``EntryNotFound``, which the client
  turns into ``RepositoryNotFoundError`` / ``RevisionNotFoundError`` / ``RemoteEntryNotFoundError``;
* ``GET /api/models/{repo_id}[/revision/{revision}]``: the commit sha and file list (``HfApi.model_info``);
* ``GET /api/models/{repo_id}/tree/{revision}[/{path}]``: the files under ``path`` with their sizes and oids
  (``HfApi.list_repo_tree``, ``snapshot_download``, ``hf download``);
* ``GET /api/models?filter=TAG&search=TEXT&cardData=1``: the repos whose card (README front matter) has the tag,
  with their card data (``HfApi.list_models``), one page;
* ``GET /api/whoami-v2``: a user named ``loopback`` for any token (``HfApi.whoami``).

Writing, as ``HfApi.create_repo`` / ``create_branch`` / ``upload_folder`` / ``create_commit`` call it:

* ``POST /api/repos/create``: a repo whose ``main`` holds an initial ``.gitattributes`` commit; ``409`` (with the
  repo's ``url``, which the client reads under ``exist_ok=True``) if it exists;
* ``POST /api/{type}s/{repo_id}/branch/{branch}`` (``startingPoint``: a branch or commit sha, default ``main``);
* ``POST /api/validate-yaml``: the README front matter must parse as YAML;
* ``POST /api/{type}s/{repo_id}/preupload/{revision}``: ``lfs`` for LFS suffixes, else ``regular``, with the oid the
  file has at that revision so that the client skips unchanged files;
* ``POST /{repo_id}.git/info/lfs/objects/batch`` (basic transfer): an upload action to ``PUT`` the object to the
  CDN port, which checks its sha256, and a verify action; none for an object the server already holds;
* ``POST /api/{type}s/{repo_id}/commit/{branch}`` (NDJSON): ``file`` (inline base64; refused for an LFS suffix),
  ``lfsFile`` (an uploaded object, by sha256), ``deletedFile``, ``deletedFolder``; ``parentCommit`` must be the
  branch head. Each commit stores its complete file set, so every revision stays servable by sha.

Not spoken: Xet storage (``hf_xet``, when installed, would take every upload: :func:`use_endpoint` turns it off, as
``HF_HUB_DISABLE_XET=1`` does), pull requests, auth (any token or none is accepted), pagination.

By hand (no pytest needed): ``python -m hub_server --publish acme/demo=DIR`` from ``tests/`` (or with
``PYTHONPATH=tests``) serves until Ctrl-C and prints the environment to point ``huggingface_hub``, ``hf download``
and ``hello-labels`` at it.

Only the standard library (and PyYAML, a ``huggingface_hub`` dependency) is used. The client reads
``HF_ENDPOINT``, the cache location and ``HF_HUB_OFFLINE`` once, at import, so setting environment variables in a
test is not enough: use :func:`use_endpoint`, :func:`use_cache` and :func:`set_offline` (or the :func:`hub`
fixture, which does the first two).
"""
from __future__ import annotations

import base64
import hashlib
import http.server
import json
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:  # pytest only for annotations: the server runs without it (python -m hub_server)
    import pytest

__all__ = ["HubServer", "use_endpoint", "use_cache", "set_offline", "hub", "main"]  # noqa: F822  (hub: __getattr__)

_KEY = r"(?P<repo>(?:datasets/|spaces/)?[^/]+(?:/[^/]+)?)"  # a repo's URL key: type prefix + repo id
_RESOLVE = re.compile(r"^/" + _KEY + r"/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_CDN = re.compile(r"^/cdn/(?P<sha256>[0-9a-f]{64})$")
_CDN_UPLOAD = re.compile(r"^/cdn/upload/(?P<sha256>[0-9a-f]{64})$")
_API = re.compile(r"^/api/(?P<type>model|dataset|space)s/(?P<repo>[^/]+(?:/[^/]+)?)"
                  r"(?:/(?P<op>preupload|commit|branch|revision)/(?P<rev>[^/]+))?$")
_TREE = re.compile(r"^/api/(?P<type>model|dataset|space)s/(?P<repo>[^/]+(?:/[^/]+)?)/tree/(?P<rev>[^/]+)"
                   r"(?:/(?P<path>.*))?$")
_LFS = re.compile(r"^/" + _KEY + r"\.git/info/lfs/objects/(?P<op>batch|verify)$")
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
        self._lock = threading.Lock()  # the handlers run in threads; writes must not interleave

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
        with self._lock:
            return self._store(_TYPE_PREFIX[repo_type] + repo_id, revision, digest.hexdigest(), files)

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """The files of ``repo_id`` at ``revision`` (a branch or a commit sha) as the server holds them."""
        repo = self._repos[_TYPE_PREFIX[repo_type] + repo_id]
        return dict(repo["commits"][_sha_of(repo, revision)])

    def start(self, port: int = 0) -> str:
        """Start serving (on ``port``; 0: a free one); returns the endpoint URL (``http://127.0.0.1:PORT``), also
        kept as ``self.url``."""
        if self.url is None:
            hub_srv, cdn_srv = self._listen(port), self._listen()  # the CDN is another origin, like the real one
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

    def _listen(self, port: int = 0) -> http.server.ThreadingHTTPServer:
        hub = self

        class Handler(_Handler):
            server_hub = hub

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        thread.start()
        self._servers.append(srv)
        self._threads.append(thread)
        return srv

    def _store(self, key: str, branch: str, sha: str, files: dict[str, bytes]) -> str:
        repo = self._repos.setdefault(key, {"refs": {}, "commits": {}})
        repo["commits"][sha] = files
        repo["refs"][branch] = sha
        for path, data in files.items():
            if self._is_lfs(path):
                self._blobs[hashlib.sha256(data).hexdigest()] = data
        return sha

    def _respond(self, path: str, query: dict | None = None) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and (full) body for a GET of ``path``; the handler applies HEAD and Range."""
        match = _CDN.match(path)
        if match and match["sha256"] in self._blobs:
            return 200, {}, self._blobs[match["sha256"]]
        if path == "/api/whoami-v2":
            return _json(200, {"type": "user", "name": "loopback", "fullname": "Loopback Hub user", "orgs": [],
                               "auth": {"type": "access_token", "accessToken": {"role": "write"}}})
        if path == "/api/models":
            return self._list_models(query or {})
        match = _TREE.match(path)
        if match:
            return self._tree(match)
        match = _API.match(path)
        if match and match["op"] in (None, "revision"):
            return self._info(match)
        match = _RESOLVE.match(path)
        if not match:
            return _error(404, None, f"no route for {path}")
        repo = self._repos.get(match["repo"])
        if repo is None:
            return _error(404, "RepoNotFound", "Repository not found")
        revision, filename = unquote(match["rev"]), unquote(match["file"])
        sha = _sha_of(repo, revision)
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

    def _info(self, match) -> tuple[int, dict[str, str], bytes]:
        """``HfApi.model_info``: the commit sha a revision points to and its files."""
        repo = self._repos.get(_TYPE_PREFIX[match["type"]] + match["repo"])
        if repo is None:
            return _error(404, "RepoNotFound", "Repository not found")
        revision = unquote(match["rev"] or "main")
        sha = _sha_of(repo, revision)
        if sha is None:
            return _error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return _json(200, {"id": match["repo"], "sha": sha, "private": False,
                           "siblings": [{"rfilename": name} for name in sorted(repo["commits"][sha])]})

    def _list_models(self, query: dict) -> tuple[int, dict[str, str], bytes]:
        """``HfApi.list_models``: model repos whose ``main`` card has every ``filter`` tag and whose id contains
        ``search``; ``cardData`` adds the card's front matter."""
        wanted, search = set(query.get("filter", [])), (query.get("search") or [""])[0]
        answer = []
        for key, repo in sorted(self._repos.items()):
            if key.startswith(("datasets/", "spaces/")) or search not in key:
                continue
            sha = repo["refs"].get("main")
            card = _front_matter(repo["commits"][sha].get("README.md", b"")) if sha else {}
            tags = [str(t) for t in card.get("tags") or []]
            tags += [card["library_name"]] if card.get("library_name") else []
            if not wanted <= set(tags):
                continue
            entry = {"_id": key, "id": key, "modelId": key, "sha": sha, "tags": tags, "private": False,
                     "downloads": 0, "likes": 0, "library_name": card.get("library_name")}
            if "cardData" in query or "full" in query:
                entry["cardData"] = card
            answer.append(entry)
        return _json(200, answer)

    def _tree(self, match) -> tuple[int, dict[str, str], bytes]:
        """``HfApi.list_repo_tree``: the files (and folders) under ``path`` at a revision."""
        repo = self._repos.get(_TYPE_PREFIX[match["type"]] + match["repo"])
        if repo is None:
            return _error(404, "RepoNotFound", "Repository not found")
        sha = _sha_of(repo, unquote(match["rev"]))
        if sha is None:
            return _error(404, "RevisionNotFound", f"Invalid rev id: {unquote(match['rev'])}")
        prefix = unquote(match["path"] or "").strip("/")
        files = repo["commits"][sha]
        under = {p: d for p, d in files.items() if not prefix or p.startswith(prefix + "/")}
        if prefix and not under:
            return _error(404, "EntryNotFound", f"{prefix} does not exist at {sha}")
        entries = []
        for path, data in sorted(under.items()):
            entry = {"type": "file", "oid": _git_sha1(data), "size": len(data), "path": path}
            if self._is_lfs(path):
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            entries.append(entry)
        folders = sorted({"/".join(p.split("/")[:i]) for p in under for i in range(1, p.count("/") + 1)})
        entries += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": f} for f in folders
                    if not prefix or f.startswith(prefix + "/")]
        return _json(200, entries)

    def _write(self, method: str, path: str, query: dict, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body for a POST/PUT: the Hub's write API and the CDN's upload URLs."""
        try:
            with self._lock:
                if method == "PUT":
                    match = _CDN_UPLOAD.match(path)
                    return self._put_object(match["sha256"], body) if match else _error(404, None, f"no route {path}")
                if path == "/api/repos/create":
                    return self._create_repo(json.loads(body))
                if path == "/api/validate-yaml":
                    return _validate_yaml(json.loads(body).get("content", ""))
                match = _LFS.match(path)
                if match:
                    repo = self._repos.get(match["repo"])
                    if repo is None:
                        return _error(404, "RepoNotFound", "Repository not found")
                    request = json.loads(body)
                    return self._lfs_batch(match["repo"], request) if match["op"] == "batch" else self._verify(request)
                match = _API.match(path)
                if not match or match["op"] in (None, "revision"):
                    return _error(404, None, f"no route for POST {path}")
                key = _TYPE_PREFIX[match["type"]] + match["repo"]
                repo, revision = self._repos.get(key), unquote(match["rev"])
                if repo is None:
                    return _error(404, "RepoNotFound", "Repository not found")
                if match["op"] == "branch":
                    return self._create_branch(repo, revision, json.loads(body or b"{}"))
                if match["op"] == "preupload":
                    return self._preupload(repo, revision, json.loads(body))
                return self._commit(key, repo, revision, query, body)
        except (ValueError, KeyError, TypeError, AttributeError) as err:  # a request this server cannot read
            return _error(400, None, f"malformed request: {err!r}")

    def _create_repo(self, request: dict) -> tuple[int, dict[str, str], bytes]:
        name, org, repo_type = request["name"], request.get("organization"), request.get("type") or "model"
        repo_id = f"{org}/{name}" if org else name
        key = _TYPE_PREFIX[repo_type] + repo_id
        url = f"{self.url}/{key}"
        if key in self._repos:  # the client reads the url from this answer under exist_ok=True
            return _json(409, {"error": "You already created this repo", "url": url})
        files = {".gitattributes": "".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n"
                                           for suffix in sorted(self.LFS_SUFFIXES)).encode()}
        self._store(key, "main", _commit_sha(key, None, "initial commit", files), files)
        return _json(200, {"url": url, "name": repo_id})

    def _create_branch(self, repo: dict, branch: str, request: dict) -> tuple[int, dict[str, str], bytes]:
        if branch in repo["refs"]:
            return _error(409, None, f"Reference already exists: refs/heads/{branch}")
        start = request.get("startingPoint") or "main"
        sha = _sha_of(repo, start)
        if sha is None:
            return _error(404, "RevisionNotFound", f"Invalid rev id: {start}")
        repo["refs"][branch] = sha
        return _json(200, {})

    def _preupload(self, repo: dict, revision: str, request: dict) -> tuple[int, dict[str, str], bytes]:
        """Upload mode per file, and the oid it has at ``revision`` (sha256 for LFS, git sha1 otherwise)."""
        sha = _sha_of(repo, revision)
        if sha is None:
            return _error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        answer = []
        for entry in request["files"]:
            lfs, data = self._is_lfs(entry["path"]), repo["commits"][sha].get(entry["path"])
            oid = None if data is None else hashlib.sha256(data).hexdigest() if lfs else _git_sha1(data)
            answer.append({"path": entry["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                           "oid": oid})
        return _json(200, {"files": answer, "commitOid": sha})

    def _lfs_batch(self, key: str, request: dict) -> tuple[int, dict[str, str], bytes]:
        """Basic transfer: PUT each missing object to the CDN, then have the client verify it here."""
        if request.get("operation") != "upload":
            return _error(400, None, "only the upload operation is served")
        objects = []
        for obj in request["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self._blobs:  # a present object gets no actions: the client skips it
                entry["actions"] = {"upload": {"href": f"{self._cdn_url}/cdn/upload/{obj['oid']}"},
                                    "verify": {"href": f"{self.url}/{key}.git/info/lfs/objects/verify"}}
            objects.append(entry)
        return 200, {"Content-Type": "application/vnd.git-lfs+json"}, json.dumps(
            {"transfer": "basic", "objects": objects}).encode()

    def _put_object(self, sha256: str, data: bytes) -> tuple[int, dict[str, str], bytes]:
        if hashlib.sha256(data).hexdigest() != sha256:
            return _error(400, None, "uploaded content does not match its sha256")
        self._blobs[sha256] = data
        return 200, {}, b""

    def _verify(self, request: dict) -> tuple[int, dict[str, str], bytes]:
        data = self._blobs.get(request["oid"])
        if data is None or len(data) != request["size"]:
            return _error(404, None, f"LFS object {request['oid']} not found")
        return _json(200, {})

    def _commit(self, key: str, repo: dict, branch: str, query: dict, body: bytes):
        """Apply an NDJSON commit to ``branch``: a new commit holding the parent's files with the changes."""
        if "create_pr" in query:
            return _error(400, None, "pull requests are not served by this stand-in")
        if branch not in repo["refs"]:  # commits go to branches only, as on the Hub
            return _error(404, "RevisionNotFound", f"Invalid rev id: {branch}")
        items = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not items or items[0]["key"] != "header":
            return _error(400, None, "a commit starts with its header")
        header, parent = items[0]["value"], repo["refs"][branch]
        if header.get("parentCommit") and not parent.startswith(header["parentCommit"]):
            return _error(412, None, f"A commit has happened since {header['parentCommit']}: {branch} is at {parent}")
        files = dict(repo["commits"][parent])
        for item in items[1:]:
            value = item["value"]
            path = value["path"]
            if item["key"] == "file":
                if self._is_lfs(path):
                    return _error(400, None, f"{path} must be uploaded through LFS")
                files[path] = base64.b64decode(value["content"], validate=True)
            elif item["key"] == "lfsFile":
                data = self._blobs.get(value["oid"])
                if data is None or len(data) != value.get("size", len(data)):
                    return _error(400, None, f"LFS object {value['oid']} for {path} was never uploaded")
                files[path] = data
            elif item["key"] == "deletedFile":
                if files.pop(path, None) is None:
                    return _error(404, "EntryNotFound", f"A file with this name doesn't exist: {path}")
            elif item["key"] == "deletedFolder":
                files = {name: data for name, data in files.items() if not name.startswith(path.rstrip("/") + "/")}
            else:
                return _error(400, None, f"unknown commit operation {item['key']!r}")
        sha = self._store(key, branch, _commit_sha(key, parent, header.get("summary", ""), files), files)
        return _json(200, {"commitUrl": f"{self.url}/{key}/commit/{sha}", "commitOid": sha,
                           "pullRequestUrl": None})


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: nothing lingers on a pooled socket after stop()
    server_hub: HubServer

    def do_HEAD(self):
        self._read(head=True)

    def do_GET(self):
        self._read(head=False)

    def do_POST(self):
        self._write()

    def do_PUT(self):
        self._write()

    def _read(self, head: bool) -> None:
        hub = self.server_hub
        hub.requests.append((self.command, self.path))
        url = urlsplit(self.path)
        status, headers, body = hub._respond(url.path, parse_qs(url.query, keep_blank_values=True))
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
        self._send(status, headers, body, head)

    def _write(self) -> None:
        hub = self.server_hub
        hub.requests.append((self.command, self.path))
        url = urlsplit(self.path)
        self._send(*hub._write(self.command, url.path, parse_qs(url.query), self._body()))

    def _body(self) -> bytes:
        """The request body, sent with a Content-Length or chunked (as a streamed file upload may be)."""
        if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _send(self, status: int, headers: dict[str, str], body: bytes, head: bool = False) -> None:
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


def _sha_of(repo: dict, revision: str) -> str | None:
    """The commit sha a branch name or a (full) commit sha stands for, or None."""
    return repo["refs"].get(revision) or (revision if revision in repo["commits"] else None)


def _commit_sha(key: str, parent: str | None, summary: str, files: dict[str, bytes]) -> str:
    digest = hashlib.sha1(f"{key}\nparent {parent}\n{summary}\n".encode())
    for path in sorted(files):
        digest.update(f"{path}\0{_git_sha1(files[path])}\n".encode())
    return digest.hexdigest()


def _json(status: int, obj) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(obj).encode()


def _front_matter(readme: bytes) -> dict:
    """A README's YAML front matter as a dict ({} if none or unreadable)."""
    import yaml

    match = re.match(r"^---\n(.*?)\n---", readme.decode("utf-8", "replace"), re.S)
    try:
        data = yaml.safe_load(match[1]) if match else {}
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _validate_yaml(content: str) -> tuple[int, dict[str, str], bytes]:
    """``POST /api/validate-yaml``: the README's front matter, if any, must parse as YAML."""
    import yaml

    match = re.match(r"^---\n(.*?)\n---", content, re.S)
    try:
        if match:
            yaml.safe_load(match[1])
    except yaml.YAMLError as err:
        return _json(400, {"errors": [{"message": str(err).splitlines()[0]}], "warnings": []})
    return _json(200, {"errors": [], "warnings": []})


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

def use_endpoint(monkeypatch: "pytest.MonkeyPatch", url: str) -> None:
    """Point the (already imported) ``huggingface_hub`` client at ``url`` for this test.

    ``hf_hub_url`` builds URLs from ``constants.HUGGINGFACE_CO_URL_TEMPLATE``, which is derived from ``HF_ENDPOINT``
    at import time, so both it and ``constants.ENDPOINT`` (used by ``HfApi``) are patched; ``HF_ENDPOINT`` is set
    too, for subprocesses. Telemetry is switched off as well: with it on, the first request of a process is a
    ``GET {ENDPOINT}/api/agent-harnesses`` (user-agent detection), which would show up in ``HubServer.requests``.
    Xet is switched off too: with ``hf_xet`` installed the client sends every upload to a Xet store, which this
    server does not speak; without it (or with ``HF_HUB_DISABLE_XET=1``) it uses LFS, as here. ``HF_TOKEN`` is set
    to a dummy token, so that checks for a login (``HfApi.whoami``) pass as they would for a logged-in user.
    """
    from huggingface_hub import constants

    url = url.rstrip("/")
    monkeypatch.setenv("HF_TOKEN", "hf_loopback")
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")


def use_cache(monkeypatch: "pytest.MonkeyPatch", path: str | Path) -> Path:
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


def set_offline(monkeypatch: "pytest.MonkeyPatch", offline: bool = True) -> None:
    """Turn ``HF_HUB_OFFLINE`` on (or off) for the already imported client, for this test.

    The client checks ``constants.HF_HUB_OFFLINE`` on every request (``constants.is_offline_mode()``), so patching
    it takes effect at once; the environment variable is set too, for subprocesses.
    """
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)


def _hub(monkeypatch, tmp_path):
    """A started :class:`HubServer`, with the client pointed at it and caching under ``tmp_path/hf``.

    Import it into a test module (``from hub_server import hub``) and add repos with ``hub.add_repo``.
    """
    with HubServer() as server:
        use_endpoint(monkeypatch, server.url)
        use_cache(monkeypatch, tmp_path / "hf")
        yield server


def __getattr__(name: str):
    """``hub``, the pytest fixture, made on first import: pytest is imported only by the tests that use it."""
    if name == "hub":
        import pytest

        globals()["hub"] = pytest.fixture(name="hub")(_hub)
        return globals()["hub"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv=None) -> int:
    """Serve folders as Hub repos until interrupted: ``python -m hub_server --publish ORG/NAME=DIR [...]``."""
    import argparse
    import time

    parser = argparse.ArgumentParser(prog="python -m hub_server", description=__doc__.split("\n")[0])
    parser.add_argument("--publish", action="append", default=[], metavar="ORG/NAME=DIR",
                        help="serve the files under DIR as the main branch of ORG/NAME; repeatable")
    parser.add_argument("--port", type=int, default=0, help="port of the Hub endpoint (default: a free one)")
    args = parser.parse_args(argv)
    server = HubServer()
    for item in args.publish:
        repo_id, sep, folder = item.partition("=")
        if not sep or not Path(folder).is_dir():
            parser.error(f"--publish wants ORG/NAME=DIR with DIR a folder, got {item!r}")
        server.add_repo(repo_id, folder)
    url = server.start(args.port)
    print(f"serving {len(args.publish)} repo(s) at {url}; point the client at it with:\n"
          f"  export HF_ENDPOINT={url} HF_HUB_DISABLE_XET=1 HF_TOKEN=hf_loopback\n"
          f"then e.g. `hf download ORG/NAME` or `hello-labels info ORG/NAME`; Ctrl-C stops", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
