"""A stand-in Kubernetes API server for namespaced custom objects.

No kube-apiserver can run where canary is tested, yet the Kubernetes routers must be
exercised through the real ``kubernetes`` client, over HTTP. This server speaks the part of
the protocol they use the way the real one does: GET, PUT and PATCH on
``/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}``; a resourceVersion bumped on
every write; a stale one answered 409 Conflict; merge-patch and JSON-patch bodies; a failed
JSON-patch ``test`` answered 422; strategic merge patch refused with 415 as for any CRD;
errors as ``Status`` objects. Given a CRD's ``openAPIV3Schema`` for a kind (``schemas``), it
prunes unknown fields on every write as the real server does for structural schemas (so a
field missing from the installed CRD channel silently disappears); it does not validate.
Server-side apply, lists, watches and admission are not implemented. Tests can make it
fail, stall, or change an object between a read and a write.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml
from kubernetes.client import Configuration

Obj = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    group: str
    plural: str
    kind: str
    versions: tuple[str, ...]


RESOURCES = (
    Resource("gateway.networking.k8s.io", "httproutes", "HTTPRoute", ("v1", "v1beta1")),
    Resource("networking.istio.io", "virtualservices", "VirtualService",
             ("v1", "v1beta1", "v1alpha3")),
    Resource("networking.istio.io", "destinationrules", "DestinationRule",
             ("v1", "v1beta1", "v1alpha3")),
    Resource("split.smi-spec.io", "trafficsplits", "TrafficSplit",
             ("v1alpha2", "v1alpha3", "v1alpha4")),
)
PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json")
_REASONS = {401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
            422: "Invalid", 429: "TooManyRequests", 503: "ServiceUnavailable"}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    content_type: str
    query: dict[str, list[str]]
    status: int


@dataclass
class _Failure:
    status: int
    times: int
    methods: tuple[str, ...]


@dataclass
class FakeKube:
    """The server and its store. Use as a context manager; ``url`` once started."""

    resources: Iterable[Resource] = RESOURCES
    token: str | None = None  # when set, requests need "Authorization: Bearer <token>"
    delay: float = 0.0  # seconds to stall every request before answering
    requests: list[Request] = field(default_factory=list)
    schemas: dict[str, Obj] = field(default_factory=dict)  # kind -> openAPIV3Schema

    def __post_init__(self) -> None:
        self._kinds = {r.kind: r for r in self.resources}
        self._by_path = {(r.group, r.plural): r for r in self.resources}
        self._objects: dict[tuple[str, str, str], Obj] = {}  # (kind, ns, name)
        self._revision = 1000
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._failures: list[_Failure] = []
        self._interference: list[Callable[[], None]] = []
        self._server: _Server | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> FakeKube:
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                         name="fake-kube", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes stalled handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeKube:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the server first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def configuration(self) -> Configuration:
        """A client Configuration pointing here, no kubeconfig involved."""
        cfg = Configuration(host=self.url)
        if self.token:
            cfg.api_key = {"BearerToken": self.token}
            cfg.api_key_prefix = {"BearerToken": "Bearer"}
        return cfg

    def write_kubeconfig(self, path: str | Path, *, context: str = "fake") -> str:
        user: Obj = {"token": self.token} if self.token else {}
        doc = {"apiVersion": "v1", "kind": "Config", "current-context": context,
               "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
               "users": [{"name": "fake", "user": user}],
               "contexts": [{"name": context, "context": {"cluster": "fake", "user": "fake"}}]}
        Path(path).write_text(yaml.safe_dump(doc))
        return str(path)

    # -- the store ---------------------------------------------------------------------
    def create(self, obj: Obj) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", "default")
        meta.setdefault("generation", 1)
        if obj.get("kind") not in self._kinds:
            raise KeyError(f"this fake serves no kind {obj.get('kind')!r}")
        obj = self._pruned(obj)
        with self._lock:
            meta["resourceVersion"] = self._bump()
            self._objects[(obj["kind"], meta["namespace"], meta["name"])] = obj
        return copy.deepcopy(obj)

    def load(self, path: str | Path) -> list[Obj]:
        """Create every object of a served kind in a YAML file; other kinds are skipped."""
        docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if isinstance(d, dict)]
        return [self.create(d) for d in docs if d.get("kind") in self._kinds]

    def get(self, kind: str, namespace: str, name: str) -> Obj:
        with self._lock:
            return copy.deepcopy(self._objects[(kind, namespace, name)])

    def modify(self, kind: str, namespace: str, name: str, change: Callable[[Obj], None]) -> Obj:
        """Change an object behind the clients' backs, as another writer would."""
        with self._lock:
            obj = self._objects[(kind, namespace, name)]
            change(obj)
            obj["metadata"]["resourceVersion"] = self._bump()
            return copy.deepcopy(obj)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            del self._objects[(kind, namespace, name)]

    def _pruned(self, obj: Obj) -> Obj:
        schema = self.schemas.get(str(obj.get("kind")))
        if schema is None:
            return obj
        body = prune({k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")},
                     schema)
        return {**body, **{k: obj[k] for k in ("apiVersion", "kind", "metadata") if k in obj}}

    # -- misbehaviour ------------------------------------------------------------------
    def fail_next(self, status: int, *, times: int | None = 1,
                  methods: tuple[str, ...] = ("GET", "PUT", "PATCH")) -> None:
        """Answer the next ``times`` matching requests (None: all, until ``clear_failures``)
        with ``status`` and a Status body."""
        with self._lock:
            self._failures.append(_Failure(status, -1 if times is None else times, methods))

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def interfere(self, change: Callable[[], None], *, times: int = 1) -> None:
        """Run ``change`` just before each of the next ``times`` writes is applied."""
        with self._lock:
            self._interference.extend([change] * times)

    # -- request handling (called from handler threads) --------------------------------
    def _bump(self) -> str:
        self._revision += 1
        return str(self._revision)

    def handle(self, method: str, path: str, headers: dict[str, str],
               body: bytes) -> tuple[int, Obj]:
        if self.delay and self._stopping.wait(self.delay):
            return 503, _status(503, "ServiceUnavailable", "server is stopping")
        if self.token and headers.get("authorization") != f"Bearer {self.token}":
            return 401, _status(401, "Unauthorized", "Unauthorized")
        with self._lock:
            for failure in self._failures:
                if method in failure.methods and failure.times != 0:
                    if failure.times > 0:  # negative: until clear_failures()
                        failure.times -= 1
                    return failure.status, _status(failure.status, _REASONS.get(
                        failure.status, "InternalError"), f"injected failure {failure.status}")
            change = self._interference.pop(0) if method != "GET" and self._interference else None
        if change is not None:
            change()
        parts = urlsplit(path).path.strip("/").split("/")
        if len(parts) != 7 or parts[0] != "apis" or parts[3] != "namespaces":
            return 404, _status(404, "NotFound", "the server could not find the requested resource")
        _, group, version, _, ns, plural, name = parts
        res = self._by_path.get((group, plural))
        if res is None or version not in res.versions:
            return 404, _status(404, "NotFound", "the server could not find the requested resource")
        with self._lock:
            current = self._objects.get((res.kind, ns, name))
            if current is None:
                return 404, _status(404, "NotFound", f'{plural}.{group} "{name}" not found',
                                    {"name": name, "group": group, "kind": plural})
            if method == "GET":
                return 200, _as_version(current, group, version)
            if method not in ("PUT", "PATCH"):
                return 405, _status(405, "MethodNotAllowed", f"{method} is not supported here")
            return self._write(method, res, current, version, headers, body)

    def _write(self, method: str, res: Resource, current: Obj, version: str,
               headers: dict[str, str], body: bytes) -> tuple[int, Obj]:
        ctype = headers.get("content-type", "").split(";")[0].strip()
        if method == "PATCH" and ctype not in PATCH_TYPES:
            return 415, _status(415, "UnsupportedMediaType",
                                "the body of the request was in an unknown format - accepted "
                                f"media types include: {', '.join(PATCH_TYPES)}")
        meta = current["metadata"]
        try:
            doc = json.loads(body or b"null")
            if method == "PUT":
                new = doc
                if not isinstance(new, dict) or not new.get("metadata", {}).get("resourceVersion"):
                    return 422, _status(422, "Invalid", "metadata.resourceVersion: Invalid value: "
                                        "0x0: must be specified for an update")
            elif ctype == PATCH_TYPES[0]:
                new = apply_json_patch(_as_version(current, res.group, version), doc)
            else:
                new = merge_patch(_as_version(current, res.group, version), doc)
        except (ValueError, PatchError):
            # The real server hides the JSON-patch error behind this very message.
            return 422, _status(422, "Invalid", "the server rejected our request due to an "
                                "error in our request")
        new_meta = new.setdefault("metadata", {})
        if new_meta.get("name") != meta["name"]:
            return 400, _status(400, "BadRequest", "the name of the object does not match "
                                "the name on the URL")
        if new_meta.get("resourceVersion", meta["resourceVersion"]) != meta["resourceVersion"]:
            return 409, _status(409, "Conflict", f'Operation cannot be fulfilled on '
                                f'{res.plural}.{res.group} "{meta["name"]}": the object has been '
                                "modified; please apply your changes to the latest version "
                                "and try again")
        for key in ("namespace", "uid", "creationTimestamp"):
            if key in meta:
                new_meta[key] = meta[key]
        changed = new.get("spec") != current.get("spec")
        new_meta["generation"] = meta.get("generation", 1) + int(changed)
        new_meta["resourceVersion"] = self._bump()
        new["apiVersion"], new["kind"] = f"{res.group}/{version}", res.kind
        new = self._pruned(new)
        self._objects[(res.kind, meta["namespace"], meta["name"])] = new
        return 200, copy.deepcopy(new)


def _as_version(obj: Obj, group: str, version: str) -> Obj:
    out = copy.deepcopy(obj)
    out["apiVersion"] = f"{group}/{version}"
    return out


def _status(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "details": details or {}, "code": code}


def _handler_for(fake: FakeKube) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects
        disable_nagle_algorithm = True  # headers and body go out in two writes

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, answer = fake.handle(self.command, self.path, headers, body)
            url = urlsplit(self.path)
            fake.requests.append(Request(self.command, url.path, headers.get("content-type", ""),
                                         parse_qs(url.query), status))
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_PATCH = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            pass  # tests read fake.requests instead

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stalled handler must not hold up stop()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up is expected here, not a failure


def prune(value: Any, schema: Obj) -> Any:
    """``value`` without the fields ``schema`` does not declare (structural pruning)."""
    if isinstance(value, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return value
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        if isinstance(props, dict):
            return {k: prune(v, props[k]) for k, v in value.items() if k in props}
        if isinstance(extra, dict):
            return {k: prune(v, extra) for k, v in value.items()}
        return {}  # an object schema that declares nothing keeps nothing
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(v, schema["items"]) for v in value]
    return value


class PatchError(ValueError):
    """A JSON patch that cannot be applied: bad op, missing path, failed test."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def apply_json_patch(target: Obj, ops: Any) -> Obj:
    """RFC 6902 add, remove, replace, move, copy and test, all or nothing."""
    if not isinstance(ops, list):
        raise PatchError("a JSON patch is a list of operations")
    doc: Any = copy.deepcopy(target)
    for op in ops:
        if not isinstance(op, dict) or not isinstance(op.get("path"), str):
            raise PatchError(f"malformed operation {op!r}")
        kind, path = op.get("op"), op["path"]
        if kind == "test":
            if _resolve(doc, path) != op.get("value"):
                raise PatchError(f"testing value {path} failed")
        elif kind == "remove":
            _remove(doc, path)
        elif kind in ("add", "replace"):
            if "value" not in op:
                raise PatchError(f"{kind} {path} has no value")
            if kind == "replace":
                _remove(doc, path)
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind in ("move", "copy"):
            value = copy.deepcopy(_resolve(doc, str(op.get("from"))))
            if kind == "move":
                _remove(doc, str(op.get("from")))
            doc = _add(doc, path, value)
        else:
            raise PatchError(f"unknown operation {kind!r}")
    if not isinstance(doc, dict):
        raise PatchError("the patch did not leave an object")
    return doc


def _split(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"bad JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _step(node: Any, token: str) -> Any:
    if isinstance(node, dict) and token in node:
        return node[token]
    if isinstance(node, list) and token.isdigit() and int(token) < len(node):
        return node[int(token)]
    raise PatchError(f"path element {token!r} not found")


def _resolve(doc: Any, path: str) -> Any:
    for token in _split(path):
        doc = _step(doc, token)
    return doc


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _split(path)
    if not tokens:
        return value
    parent = _resolve(doc, "".join("/" + t.replace("~", "~0").replace("/", "~1")
                                   for t in tokens[:-1]))
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list) and (last == "-" or last.isdigit() and int(last) <= len(parent)):
        parent.insert(len(parent) if last == "-" else int(last), value)
    else:
        raise PatchError(f"cannot add at {path}")
    return doc


def _remove(doc: Any, path: str) -> None:
    tokens = _split(path)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _resolve(doc, path[: path.rfind("/")])
    _step(parent, tokens[-1])  # raises if missing
    if isinstance(parent, dict):
        del parent[tokens[-1]]
    else:
        del parent[int(tokens[-1])]
