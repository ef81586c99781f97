"""The routes that are not the rollout API: liveness, readiness, /metrics, the status page.

/healthz means "the process answers" and is normally answered before routing, by
canary/server/httpd.py's front door; the route here documents it (and answers if the app
is served without that front door). /readyz means "the store answers a real query". Neither
needs a token, nor does /metrics or the page: the page asks the API with the token its
user gives it.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse

from canary.errors import CanaryError
from canary.server import models as m
from canary.server.apikit import ApiError
from canary.server.exporter import ServeMetrics
from canary.store.base import StateStore

_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8",
          "html": "text/html; charset=utf-8"}
_STATIC = frozenset(f.name for f in resources.files("canary.server").joinpath("web").iterdir()
                    if f.name.rsplit(".", 1)[-1] in _TYPES)


def add_web_routes(app: FastAPI, *, store: StateStore, metrics: ServeMetrics) -> None:
    @app.get("/healthz", response_model=m.Health, summary="The process answers.")
    async def healthz() -> m.Health:
        return m.Health(ok=True)

    @app.get("/readyz", response_model=m.Health, responses={503: {"model": m.Health}},
             summary="The store answers a real query: 503 when it does not.")
    def readyz() -> JSONResponse:
        try:
            store.last_stable_version("canary-readyz-probe")
        except CanaryError as exc:
            return JSONResponse({"ok": False, "error": f"store: {exc}"}, status_code=503)
        return JSONResponse({"ok": True, "error": None})

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        body, ctype = metrics.render()
        return Response(body, media_type=ctype)

    @app.get("/", include_in_schema=False)
    @app.get("/index.html", include_in_schema=False)
    async def index() -> Response:
        return _resource("index.html")

    @app.get("/static/{file}", include_in_schema=False)
    async def static(file: str) -> Response:
        if file not in _STATIC or file.endswith(".html"):
            raise ApiError(404, f"no file {file}")
        return _resource(file)


def _resource(name: str) -> Response:
    """A file of the status page (package data under canary/server/web/)."""
    data = resources.files("canary.server").joinpath("web", name).read_bytes()
    return Response(data, media_type=_TYPES[name.rsplit(".", 1)[-1]])
