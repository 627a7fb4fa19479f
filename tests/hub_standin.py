"""A loopback stand-in for the few Hub API endpoints that `create_repo`, `create_branch` and `upload_folder` call.

Written against huggingface_hub 2.4 (hf_api.py, _commit_api.py, lfs.py, utils/_detect_agent.py). It keeps repos in
memory, checks the Bearer token, answers `preupload` with "lfs" for binary files (as the Hub does for weights) and
"regular" for text, serves the classic LFS batch ("basic" transfer) + PUT upload, and applies NDJSON commits. It
binds 127.0.0.1 only, caps body sizes, request count and socket time, and is used as a context manager so it always
shuts down.

It serves classic LFS only, not Xet storage (a CAS server for hf_xet's chunk/xorb/shard protocol). huggingface_hub 2
does not negotiate this with the server: whenever `hf_xet` is installed, `upload_folder` sends every "lfs" file
through Xet (`utils/_runtime.is_xet_available`; it first asks `/api/models/{repo}/xet-write-token/{rev}`, which
this stand-in does not have). Clients must therefore run with HF_HUB_DISABLE_XET=1 (or
`constants.HF_HUB_DISABLE_XET = True`), which takes the classic path: preupload, LFS batch, PUT, commit.

Besides the upload endpoints it answers `GET /api/models/{repo}[/revision/{rev}]` (repo info, which `create_repo(...,
exist_ok=True)` asks after a 401/403) and the public, unauthenticated `GET /api/agent-harnesses` (the registry that
huggingface_hub 2 fetches once per process, before its first request, to build its User-Agent) with an empty
registry.
"""

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_REQUESTS = 500
SOCKET_TIMEOUT_S = 10


@dataclass
class Commit:
    oid: str
    summary: str
    description: str
    added: list[str]
    deleted: list[str]


@dataclass
class Repo:
    private: bool
    branches: dict[str, dict[str, bytes]] = field(default_factory=dict)
    commits: dict[str, list[Commit]] = field(default_factory=dict)


@dataclass
class Request:
    method: str
    path: str
    authorization: str | None


class HubStandIn:
    """``with HubStandIn(token) as hub: ...``: ``hub.endpoint`` is the HF_ENDPOINT to use."""

    def __init__(self, token: str, max_body_bytes: int = MAX_BODY_BYTES):
        self.token = token
        self.max_body_bytes = max_body_bytes
        self.repos: dict[str, Repo] = {}
        self.lfs_blobs: dict[str, bytes] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def __enter__(self) -> "HubStandIn":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def files(self, repo_id: str, branch: str = "main") -> dict[str, bytes]:
        return dict(self.repos[repo_id].branches[branch])

    def commits(self, repo_id: str, branch: str = "main") -> list[Commit]:
        return list(self.repos[repo_id].commits[branch])

    # -- endpoint logic (called with the lock held) -----------------------------------------------------------

    def create_repo(self, body: dict) -> tuple[int, dict]:
        repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
        if repo_id in self.repos:
            return 409, {"error": "You already created this model repo", "url": f"{self.endpoint}/{repo_id}"}
        # huggingface_hub 2 sends "visibility" ("public" / "private"); 0.x sent a boolean "private".
        repo = Repo(private=body["visibility"] == "private" if "visibility" in body else bool(body.get("private")))
        # The Hub starts every repo with a .gitattributes that routes binaries to LFS.
        repo.branches["main"] = {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}
        repo.commits["main"] = [Commit(_oid("init", repo_id), "initial commit", "", [".gitattributes"], [])]
        self.repos[repo_id] = repo
        return 200, {"url": f"{self.endpoint}/{repo_id}"}

    def commit(self, repo_id: str, branch: str, body: bytes) -> tuple[int, dict]:
        files = self.repos[repo_id].branches[branch]
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = lines[0]["value"]
        staged, added, deleted = dict(files), [], []
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            if key == "file":
                staged[value["path"]] = base64.b64decode(value["content"])
                added.append(value["path"])
            elif key == "lfsFile":
                if value["oid"] not in self.lfs_blobs:
                    return 422, {"error": f"LFS object {value['oid']} was never uploaded"}
                staged[value["path"]] = self.lfs_blobs[value["oid"]]
                added.append(value["path"])
            elif key == "deletedFile":
                if value["path"] not in staged:
                    return 404, {"error": "A file with this name doesn't exist"}
                del staged[value["path"]]
                deleted.append(value["path"])
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                for path in [p for p in staged if p.startswith(prefix)]:
                    del staged[path]
                    deleted.append(path)
            else:
                return 400, {"error": f"unsupported commit operation {key}"}
        oid = _oid(repo_id, branch, str(len(self.repos[repo_id].commits[branch])), body.hex()[:64])
        files.clear()
        files.update(staged)
        self.repos[repo_id].commits[branch].append(
            Commit(oid, header["summary"], header.get("description", ""), added, deleted))
        return 200, {"commitUrl": f"{self.endpoint}/{repo_id}/commit/{oid}", "commitOid": oid, "success": True}


def _oid(*parts: str) -> str:
    return hashlib.sha1("\0".join(parts).encode()).hexdigest()


_REPO = r"(?P<repo>[^/]+/[^/]+)"
_AGENT_HARNESSES = "/api/agent-harnesses"
# Routes the Hub serves without a token: the pre-signed LFS storage URLs and the public agent-harness registry.
_PUBLIC_ROUTES = ("lfs_put", "agent_harnesses")
_ROUTES = [
    ("GET", re.compile(rf"^{_AGENT_HARNESSES}$"), "agent_harnesses"),
    ("POST", re.compile(r"^/api/repos/create$"), "create"),
    ("GET", re.compile(rf"^/api/models/{_REPO}$"), "repo_info"),
    ("GET", re.compile(rf"^/api/models/{_REPO}/revision/(?P<rev>[^/]+)$"), "repo_info"),
    ("POST", re.compile(r"^/api/validate-yaml$"), "validate_yaml"),
    ("POST", re.compile(rf"^/api/models/{_REPO}/preupload/(?P<rev>[^/]+)$"), "preupload"),
    ("POST", re.compile(rf"^/api/models/{_REPO}/commit/(?P<rev>[^/]+)$"), "commit"),
    ("POST", re.compile(rf"^/api/models/{_REPO}/branch/(?P<rev>[^/]+)$"), "branch"),
    ("GET", re.compile(rf"^/api/models/{_REPO}/tree/(?P<rev>[^/]+)$"), "tree"),
    ("POST", re.compile(rf"^/{_REPO}\.git/info/lfs/objects/batch$"), "lfs_batch"),
    ("PUT", re.compile(r"^/_lfs/(?P<oid>[0-9a-f]{64})$"), "lfs_put"),
]


def _make_handler(hub: HubStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = SOCKET_TIMEOUT_S  # a stuck client cannot hold a thread forever

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_PUT(self) -> None:
            self._dispatch("PUT")

        def _read_body(self) -> bytes | None:
            """The request body, or None when it is over the size cap (the caller answers 413)."""
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks, total = [], 0
                while (size := int(self.rfile.readline().strip(), 16)) > 0:
                    total += size
                    if total > hub.max_body_bytes:
                        return None
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length") or 0)
            return None if length > hub.max_body_bytes else self.rfile.read(length)

        def _send(self, status: int, payload: dict | list, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _dispatch(self, method: str) -> None:
            url = urlsplit(self.path)
            body = self._read_body()
            if body is None:
                self.close_connection = True  # the unread body makes the connection unusable
                return self._send(413, {"error": f"body over the stand-in's {hub.max_body_bytes} byte cap"})
            with hub._lock:
                hub.requests.append(Request(method, url.path, self.headers.get("Authorization")))
                if len(hub.requests) > MAX_REQUESTS:
                    return self._send(503, {"error": "stand-in request budget exhausted"})
                for route_method, pattern, route_name in _ROUTES:
                    match = pattern.match(url.path)
                    if route_method == method and match:
                        name = route_name
                        break
                else:
                    return self._send(404, {"error": f"stand-in has no route {method} {url.path}"})
                # Every route but the _PUBLIC_ROUTES needs the Bearer token.
                if name not in _PUBLIC_ROUTES and self.headers.get("Authorization") != f"Bearer {hub.token}":
                    return self._send(401, {"error": "Invalid credentials in Authorization header"})
                params = {k: unquote(v) for k, v in match.groupdict().items()}
                repo_id = params.get("repo")
                if repo_id is not None and repo_id not in hub.repos:
                    return self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                rev = params.setdefault("rev", "main") if repo_id is not None else None
                if name in ("preupload", "commit", "tree", "repo_info") and rev not in hub.repos[repo_id].branches:
                    return self._send(404, {"error": f"Invalid rev id: {rev}"}, {"X-Error-Code": "RevisionNotFound"})
                return getattr(self, f"_{name}")(params, body, parse_qs(url.query))

        def _agent_harnesses(self, params, body, query) -> None:
            self._send(200, {"standardEnvVars": [], "harnesses": {}})  # no agent detected: User-Agent unchanged

        def _create(self, params, body, query) -> None:
            self._send(*hub.create_repo(json.loads(body)))

        def _repo_info(self, params, body, query) -> None:
            repo = hub.repos[params["repo"]]
            self._send(200, {
                "id": params["repo"], "private": repo.private, "sha": repo.commits[params["rev"]][-1].oid,
                "siblings": [{"rfilename": path} for path in sorted(repo.branches[params["rev"]])],
            })

        def _validate_yaml(self, params, body, query) -> None:
            content = json.loads(body)["content"]
            match = re.match(r"^---\n(.*?)\n---\n", content, re.DOTALL)
            try:
                metadata = yaml.safe_load(match.group(1)) if match else {}
            except yaml.YAMLError as err:
                return self._send(400, {"errors": [{"message": str(err)}], "warnings": []})
            if not isinstance(metadata, dict):
                return self._send(400, {"errors": [{"message": "metadata must be a mapping"}], "warnings": []})
            self._send(200, {"errors": [], "warnings": []})

        def _preupload(self, params, body, query) -> None:
            files = []
            for item in json.loads(body)["files"]:
                sample = base64.b64decode(item["sample"])
                mode = "lfs" if b"\0" in sample else "regular"
                files.append({"path": item["path"], "uploadMode": mode, "shouldIgnore": False})
            self._send(200, {"files": files, "commitOid": "0" * 40})

        def _commit(self, params, body, query) -> None:
            self._send(*hub.commit(params["repo"], params["rev"], body))

        def _branch(self, params, body, query) -> None:
            repo = hub.repos[params["repo"]]
            if params["rev"] in repo.branches:
                return self._send(409, {"error": f"Reference {params['rev']} already exists"})
            repo.branches[params["rev"]] = dict(repo.branches["main"])
            repo.commits[params["rev"]] = list(repo.commits["main"])
            self._send(200, {})

        def _tree(self, params, body, query) -> None:
            files = hub.repos[params["repo"]].branches[params["rev"]]
            self._send(200, [
                {"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                for path, data in sorted(files.items())
            ])

        def _lfs_batch(self, params, body, query) -> None:
            request = json.loads(body)
            # Classic LFS only: a client that does not offer the "basic" transfer (one PUT per object) is refused.
            if request.get("operation") != "upload" or "basic" not in request.get("transfers", ["basic"]):
                return self._send(422, {"message": "stand-in serves LFS uploads with the 'basic' transfer only; "
                                                   f"got operation {request.get('operation')!r}, transfers "
                                                   f"{request.get('transfers')!r}"})
            objects = [
                {"oid": obj["oid"], "size": obj["size"], "authenticated": True,
                 "actions": {"upload": {"href": f"{hub.endpoint}/_lfs/{obj['oid']}"}}}
                for obj in request["objects"]
            ]
            self._send(200, {"transfer": "basic", "objects": objects})

        def _lfs_put(self, params, body, query) -> None:
            if hashlib.sha256(body).hexdigest() != params["oid"]:
                return self._send(400, {"error": "sha256 of the body does not match the oid"})
            hub.lfs_blobs[params["oid"]] = body
            self._send(200, {})

    return Handler
