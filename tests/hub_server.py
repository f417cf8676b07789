"""A minimal, in-memory Hugging Face Hub for tests: just what `huggingface_hub` and Transformers call to push a
model and to download it again, served on 127.0.0.1 (random free port) from a background thread.

    with HubServer() as hub:              # hub.url == "http://127.0.0.1:PORT"; point HF_ENDPOINT at it
        ...
        hub.commits("user/tiny")          # every commit, oldest first: Commit(oid, message, files={path: bytes})
        hub.files("user/tiny")            # the files at the head of `main`
        hub.unknown_requests              # requests no endpoint below handles (answered 404): should stay empty

Endpoints (model repos only), and who calls them:

    POST /api/repos/create                       `HfApi.create_repo` (`push_to_hub`, `push_model_folder`); 409 (with
                                                 the repo url) if it exists, which `exist_ok=True` accepts
    GET  /api/agent-harnesses                    huggingface_hub fetches this registry (for its User-Agent) once per
                                                 process when online; answered with an empty registry
    POST /api/validate-yaml                      `create_commit` checks README.md metadata before uploading
    GET  /api/models/{repo}[/revision/{rev}]     `model_info`: `from_pretrained` resolves the revision to a commit
                                                 (`sha`) first; `create_commit` asks it when nothing changed
    POST /api/models/{repo}/branch/{branch}      `HfApi.create_branch`: pushing to a `revision` other than main
    POST /api/models/{repo}/preupload/{rev}      `create_commit` asks how to send each file: always "regular", so
                                                 content travels inline (base64) in the commit; no LFS, no xet. The
                                                 `oid` of an unchanged file lets the client skip it
    POST /api/models/{repo}/commit/{rev}         `create_commit`: NDJSON lines header / file / deletedFile /
                                                 deletedFolder; answers commitUrl and commitOid
    HEAD /{repo}/resolve/{rev}/{path}            `hf_hub_download` metadata: ETag (git blob sha1), X-Repo-Commit,
                                                 Content-Length, and no X-Xet-* headers, so the client downloads
    GET  /{repo}/resolve/{rev}/{path}            over plain HTTP; missing files answer 404 X-Error-Code EntryNotFound
                                                 (`push_to_hub` looks for an existing README.md this way)

`rev` is a branch name or a full commit id. Writes need `Authorization: Bearer <token>` with the server's token
(401 otherwise); reads are open (private repos are recorded, not enforced). A new repo has an empty `main`
branch (no initial commit). Anything else answers 404 with a JSON error and is added to `unknown_requests`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

USERNAME = "user"
_REPO = r"/(?P<repo>[^/]+/[^/]+)"
_ROUTES = [  # (method, path pattern, handler method name); repo, rev and path groups are URL-unquoted
    ("POST", r"/api/repos/create", "create_repo"),
    ("GET", r"/api/agent-harnesses", "agent_harnesses"),
    ("POST", r"/api/validate-yaml", "validate_yaml"),
    ("GET", rf"/api/models{_REPO}", "model_info"),
    ("GET", rf"/api/models{_REPO}/revision/(?P<rev>[^/]+)", "model_info"),
    ("POST", rf"/api/models{_REPO}/branch/(?P<rev>[^/]+)", "create_branch"),
    ("POST", rf"/api/models{_REPO}/preupload/(?P<rev>[^/]+)", "preupload"),
    ("POST", rf"/api/models{_REPO}/commit/(?P<rev>[^/]+)", "commit"),
    ("HEAD", rf"{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
    ("GET", rf"{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
]


def git_blob_sha1(content: bytes) -> str:
    """The id git gives a file's content: what the Hub uses as ETag and `oid` of regular (non-LFS) files."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    oid: str
    message: str
    files: dict[str, bytes]  # the whole tree after this commit


@dataclass
class Repo:
    private: bool = False
    branches: dict[str, str | None] = field(default_factory=lambda: {"main": None})  # branch -> head oid
    commits: list[Commit] = field(default_factory=list)

    def tree(self, rev: str) -> tuple[str | None, dict[str, bytes]] | None:
        """(commit oid, files) at a branch or commit id; None if there is no such revision."""
        oid = self.branches[rev] if rev in self.branches else rev
        if oid is None:
            return None, {}
        return next(((c.oid, c.files) for c in self.commits if c.oid == oid), None)


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None, **extra):
        super().__init__(message)
        self.status, self.code, self.commit, self.extra = status, code, commit, extra


class HubServer:
    """Context manager running the fake Hub; `url` is the value for HF_ENDPOINT."""

    def __init__(self, token: str = "test-token"):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self.unknown_requests: list[tuple[str, str]] = []
        self.tokens_seen: set[str] = set()
        self.lock = threading.Lock()
        self._httpd: _Server | None = None

    def __enter__(self) -> HubServer:
        server = self

        class Handler(_Handler):
            hub = server

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def commits(self, repo_id: str) -> list[Commit]:
        return list(self.repos[repo_id].commits)

    def files(self, repo_id: str, rev: str = "main") -> dict[str, bytes]:
        return dict(self.repos[repo_id].tree(rev)[1])

    # -- endpoints: (request handler, URL groups, JSON body or text) -> (status, JSON or (bytes, headers))

    def _repo(self, repo_id: str) -> Repo:
        if repo_id not in self.repos:
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return self.repos[repo_id]

    def _authorize(self, request: _Handler) -> None:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            self.tokens_seen.add(header[len("Bearer "):])
        if header != f"Bearer {self.token}":
            raise HubError(401, "Invalid credentials in Authorization header")

    def create_repo(self, request, groups, body):
        self._authorize(request)
        if body.get("type", "model") != "model":
            raise HubError(400, "this test server only hosts model repos")
        repo_id = f"{body.get('organization') or USERNAME}/{body['name']}"
        if repo_id in self.repos:
            raise HubError(409, "You already created this model repo", url=f"{self.url}/{repo_id}")
        self.repos[repo_id] = Repo(private=body.get("visibility") == "private")
        return 200, {"url": f"{self.url}/{repo_id}", "name": repo_id}

    def agent_harnesses(self, request, groups, body):
        return 200, {"standardEnvVars": [], "harnesses": {}}

    def model_info(self, request, groups, body):
        tree = self._repo(groups["repo"]).tree(groups.get("rev", "main"))
        if tree is None:
            raise HubError(404, f"Invalid rev id: {groups['rev']}", "RevisionNotFound")
        return 200, {
            "id": groups["repo"], "sha": tree[0], "private": self.repos[groups["repo"]].private,
            "siblings": [{"rfilename": path} for path in sorted(tree[1])],
        }

    def validate_yaml(self, request, groups, body):
        front_matter = re.match(r"---\n(.*?)\n---\n", body.get("content", ""), flags=re.S)
        try:
            metadata = yaml.safe_load(front_matter.group(1)) if front_matter else {}
        except yaml.YAMLError as error:
            return 400, {"errors": [{"message": f"invalid YAML: {error}"}], "warnings": []}
        if metadata is not None and not isinstance(metadata, dict):
            return 400, {"errors": [{"message": "metadata must be a mapping"}], "warnings": []}
        return 200, {"errors": [], "warnings": []}

    def create_branch(self, request, groups, body):
        self._authorize(request)
        repo = self._repo(groups["repo"])
        if groups["rev"] in repo.branches:
            raise HubError(409, f"Branch {groups['rev']} already exists")
        start = repo.tree(body.get("startingPoint") or "main")
        if start is None:
            raise HubError(404, "Invalid starting point", "RevisionNotFound")
        repo.branches[groups["rev"]] = start[0]
        return 200, {}

    def preupload(self, request, groups, body):
        self._authorize(request)
        repo = self._repo(groups["repo"])
        tree = repo.tree(groups["rev"])
        existing = tree[1] if tree else {}
        return 200, {"files": [
            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
             "oid": git_blob_sha1(existing[f["path"]]) if f["path"] in existing else None}
            for f in body["files"]
        ]}

    def commit(self, request, groups, body):
        self._authorize(request)
        repo, branch = self._repo(groups["repo"]), groups["rev"]
        if "create_pr" in parse_qs(urlsplit(request.path).query):
            raise HubError(400, "this test server does not do pull requests")
        if branch not in repo.branches:
            raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "the commit payload must start with a header line")
        files = dict(repo.tree(branch)[1])
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            if key == "file" and value.get("encoding") == "base64":
                files[value["path"]] = base64.b64decode(value["content"], validate=True)
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {path: data for path, data in files.items() if not path.startswith(prefix)}
            else:  # lfsFile never comes: preupload answers "regular" for every file
                raise HubError(400, f"unsupported commit operation {key!r}")
        parent = repo.branches[branch] or ""
        oid = hashlib.sha1(f"{parent}{len(repo.commits)}{groups['repo']}".encode()).hexdigest()
        repo.commits.append(Commit(oid, lines[0]["value"].get("summary", ""), files))
        repo.branches[branch] = oid
        return 200, {"success": True, "commitOid": oid, "commitUrl": f"{self.url}/{groups['repo']}/commit/{oid}"}

    def resolve(self, request, groups, body):
        tree = self._repo(groups["repo"]).tree(groups["rev"])
        if tree is None:
            raise HubError(404, f"Invalid rev id: {groups['rev']}", "RevisionNotFound")
        oid, files = tree
        if groups["path"] not in files:
            raise HubError(404, "Entry not found", "EntryNotFound", commit=oid)
        content = files[groups["path"]]
        headers = {"ETag": f'"{git_blob_sha1(content)}"', "X-Repo-Commit": oid}
        return 200, (content, headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client dropping a kept-alive connection is not an error
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects
    hub: HubServer

    def log_message(self, format, *args):  # quiet: the test reads `hub.requests` instead
        pass

    def _handle(self, method: str) -> None:
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        with self.hub.lock:
            self.hub.requests.append((method, path))
            for route_method, pattern, name in _ROUTES:
                match = re.fullmatch(pattern, path)
                if route_method == method and match:
                    break
            else:
                self.hub.unknown_requests.append((method, path))
                return self._reply(404, {"error": f"test hub: no endpoint for {method} {path}"})
            groups = {key: unquote(value) for key, value in match.groupdict().items()}
            is_json = self.headers.get("Content-Type", "").startswith("application/json")
            body = json.loads(raw or b"{}") if is_json else raw.decode()
            try:
                status, payload = getattr(self.hub, name)(self, groups, body)
            except HubError as error:
                headers = {"X-Error-Message": str(error)}
                headers.update({"X-Error-Code": error.code} if error.code else {})
                headers.update({"X-Repo-Commit": error.commit} if error.commit else {})
                return self._reply(error.status, {"error": str(error), **error.extra}, headers)
        if isinstance(payload, tuple):  # a file: (content, headers)
            return self._reply(status, payload[0], payload[1])
        self._reply(status, payload)

    def _reply(self, status: int, payload, headers: dict | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        content_type = "application/octet-stream" if isinstance(payload, bytes) else "application/json"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":  # HEAD: the headers a GET would send (Content-Length included), no body
            self.wfile.write(data)

    def do_GET(self):
        self._handle("GET")

    def do_HEAD(self):
        self._handle("HEAD")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def do_DELETE(self):
        self._handle("DELETE")
