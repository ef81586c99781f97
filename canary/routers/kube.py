"""What the Kubernetes routers share: client setup, guarded writes, error translation.

The gateway-api, istio and smi adapters all do one thing to different custom objects:
find two weighted entries in a list (stable and canary) and rewrite their weights. This
module talks to the cluster; kube_weights.py finds and rewrites the two entries; so each
adapter is its Config plus a ``locate`` function (and, for matches and mirroring, the
rules of kube_rules.py).

Writes are JSON patches that start with a ``test`` of ``metadata.resourceVersion``: a
change made by anyone between our read and our write fails the patch instead of being
overwritten. A real API server answers a failed ``test`` with 422 (and a stale
resourceVersion elsewhere with 409); both mean "read again and retry".
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import config as kube_config
from kubernetes.client import ApiClient, Configuration, CustomObjectsApi
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from canary.durations import parse_duration
from canary.errors import RouterError

JSON_PATCH = "application/json-patch+json"
Patch = list[dict[str, Any]]


class KubeConnection(BaseModel):
    """How to reach the cluster; the base of every Kubernetes adapter's Config."""

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, frozen=True, alias_generator=to_camel
    )

    namespace: str = Field(default="default", min_length=1)
    # Neither kubeconfig nor context: in-cluster credentials inside a pod, else the
    # default kubeconfig ($KUBECONFIG or ~/.kube/config), as kubectl does.
    kubeconfig: str | None = None
    context: str | None = None
    timeout: float = Field(default=10.0, gt=0)  # per request; a duration like 10s
    field_manager: str = Field(default="canary", min_length=1, max_length=128)
    conflict_retries: int = Field(default=5, ge=0, le=50)

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


@dataclass(frozen=True)
class ObjectRef:
    """One namespaced custom object, named the way error messages name it."""

    group: str
    version: str
    plural: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


def connect(conn: KubeConnection) -> CustomObjectsApi:
    """A client from the kubeconfig or the pod's service account; RouterError if neither."""
    cfg = Configuration()
    in_cluster = (
        conn.kubeconfig is None and conn.context is None
        and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    )
    try:
        if in_cluster:
            kube_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            kube_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=conn.kubeconfig, context=conn.context,
                client_configuration=cfg, persist_config=False,
            )
    # The loaders raise ConfigException, OSError, yaml and exec-plugin errors alike; all
    # of them mean the same thing to the user.
    except Exception as exc:
        source = "in-cluster service account" if in_cluster else (
            f"kubeconfig {conn.kubeconfig or '(default)'}"
            + (f", context {conn.context}" if conn.context else ""))
        raise RouterError(f"cannot load Kubernetes credentials from {source}: {exc}") from exc
    return api_for(cfg)


def api_for(cfg: Configuration) -> CustomObjectsApi:
    """A CustomObjectsApi on ``cfg`` with urllib3's silent retries off.

    canary's runner retries router errors with backoff; urllib3 retrying underneath would
    multiply every timeout by four before anyone heard of it.
    """
    cfg.retries = False  # urllib3 takes False as: no retries, raise the first error
    return CustomObjectsApi(ApiClient(cfg))


class KubeObjects:
    """Reads custom objects and writes them with a resourceVersion guard.

    The client is built on first use, so a rollout file can be loaded and validated on a
    machine without cluster credentials.
    """

    def __init__(self, conn: KubeConnection, *, api: CustomObjectsApi | None = None) -> None:
        self._conn = conn
        self._api = api

    @property
    def api(self) -> CustomObjectsApi:
        if self._api is None:
            self._api = connect(self._conn)
        return self._api

    def close(self) -> None:
        if self._api is not None:
            self._api.api_client.close()

    def get(self, ref: ObjectRef) -> dict[str, Any]:
        try:
            obj = self.api.get_namespaced_custom_object(
                ref.group, ref.version, ref.namespace, ref.plural, ref.name,
                _request_timeout=self._conn.timeout)
        except ApiException as exc:
            raise translate(exc, ref, "read", host=self._host()) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise self._unreachable(exc, ref, "read") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
            raise RouterError(f"unexpected answer reading {ref}: {str(obj)[:200]}")
        return obj

    def update(self, ref: ObjectRef,
               plan: Callable[[dict[str, Any]], Patch]) -> dict[str, Any]:
        """Read, ask ``plan`` for JSON patch ops, write them guarded; retry on conflict.

        ``plan`` sees the freshly read object each time, so a retry recomputes the indices
        too (a rule inserted meanwhile shifts them). No ops: nothing is written. Returns
        the object as the server stored it, after defaulting and pruning of unknown fields.
        """
        attempts = self._conn.conflict_retries + 1
        rejected: tuple[str, ApiException] | None = None  # a 422 and the version it tested
        for _ in range(attempts):
            obj = self.get(ref)
            version = str(obj["metadata"].get("resourceVersion", ""))
            if rejected is not None and rejected[0] == version:
                # Nobody wrote in between, so the 422 was about the patch itself.
                raise translate(rejected[1], ref, "update", host=self._host())
            ops = plan(obj)
            if not ops:
                return obj
            guard = {"op": "test", "path": "/metadata/resourceVersion", "value": version}
            try:
                stored = self.api.patch_namespaced_custom_object(
                    ref.group, ref.version, ref.namespace, ref.plural, ref.name,
                    [guard, *ops], field_manager=self._conn.field_manager,
                    _content_type=JSON_PATCH, _request_timeout=self._conn.timeout)
                return stored if isinstance(stored, dict) else self.get(ref)
            except ApiException as exc:
                if exc.status not in (409, 422):
                    raise translate(exc, ref, "update", host=self._host()) from exc
                rejected = (version, exc) if exc.status == 422 else None
            except urllib3.exceptions.HTTPError as exc:
                raise self._unreachable(exc, ref, "update") from exc
        if rejected is not None and self.get(ref)["metadata"].get("resourceVersion") == rejected[0]:
            raise translate(rejected[1], ref, "update", host=self._host())
        raise RouterError(
            f"conflict: {ref} changed under every one of {attempts} attempts to update it; "
            "is another controller (Flagger, Argo Rollouts, a GitOps sync) writing it too?")

    def _host(self) -> str:
        return str(self.api.api_client.configuration.host)

    def _unreachable(self, exc: urllib3.exceptions.HTTPError, ref: ObjectRef,
                     action: str) -> RouterError:
        """A RouterError for a request that got no answer at all."""
        # NewConnectionError subclasses ConnectTimeoutError; a refused connection is no timeout.
        if (isinstance(exc, urllib3.exceptions.TimeoutError)
                and not isinstance(exc, urllib3.exceptions.NewConnectionError)):
            return RouterError(f"Kubernetes API at {self._host()} did not answer within "
                               f"{self._conn.timeout:g}s ({action} {ref})")
        return RouterError(f"cannot reach the Kubernetes API at {self._host()} "
                           f"({action} {ref}): {exc}")


def status_of(exc: ApiException) -> dict[str, Any]:
    """The Kubernetes Status object in an error answer, or {} when there is none."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def translate(exc: ApiException, ref: ObjectRef, action: str, *, host: str) -> RouterError:
    """One RouterError saying what failed and what to check, from an API error answer."""
    status = status_of(exc)
    message = str(status.get("message") or exc.reason or "no message")
    code = exc.status
    if code == 404:
        details = status.get("details") or {}
        if details.get("name") == ref.name:
            return RouterError(f"{ref} not found: check the namespace and name ({message})")
        return RouterError(
            f"{ref.plural}.{ref.group}/{ref.version} is not served by the cluster at {host}: "
            f"is the {ref.kind} CRD installed, at version {ref.version}? ({message})"
        )
    if code in (401, 403):
        what = "not authenticated" if code == 401 else "permission denied"
        return RouterError(
            f"{what} ({code}) trying to {action} {ref}: canary needs RBAC verbs get and "
            f"patch on {ref.plural}.{ref.group} in namespace {ref.namespace}; check the "
            f"credentials and role bindings ({message})"
        )
    if code == 429:
        retry = exc.headers.get("Retry-After") if exc.headers else None
        delay = float(retry) if retry and str(retry).isdigit() else 1.0
        return RouterError(f"Kubernetes API throttled {action} of {ref}: {message}",
                           retry_after=delay)
    if code in (409, 422):
        return RouterError(f"the API server rejected the {action} of {ref} ({code}): {message}")
    return RouterError(f"Kubernetes API at {host} answered {code} to the {action} of {ref}: "
                       f"{message}")
