"""`canary deploy --server URL`: hand a rollout to a running `canary serve` and follow it.

CI keeps its contract: the same progress lines and the same exit codes as a local deploy
(0 promoted, 1 rolled back, 2 invalid input, 3 aborted, 4 needs a human or the controller
cannot be reached, 5 still running). The rollout runs on the controller, so stopping the
follower (Ctrl-C, SIGTERM, --timeout) never stops the rollout.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import datetime
from typing import Any

import httpx
import typer

from canary import exits
from canary.errors import ConflictError, InputError, NotFoundError, TemporaryError
from canary.exits import Exit
from canary.model import Event, MetricResult, Phase
from canary.state import AttemptProgress, RolloutState, StageProgress

VERDICTS = {0: "promoted", 1: "rolled back", 3: "aborted", 4: "needs a human",
            5: "still running on the controller (follow it again with the same command)"}


class Follower:
    """A thin JSON client of the controller's API."""

    def __init__(self, server: str, *, token: str | None, timeout: float = 10.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.server = server.rstrip("/")
        self.http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout)

    def call(self, method: str, path: str, **kw: Any) -> tuple[int, dict[str, Any]]:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise TemporaryError(f"cannot reach the controller at {self.server}: {exc}") \
                from exc
        try:
            body = r.json()
        except ValueError:
            body = {"error": r.text[:200]}
        if r.status_code in (401, 403):
            raise InputError(f"the controller refused the token ({r.status_code}): "
                             f"{body.get('error', '')}", field="CANARY_TOKEN")
        if r.status_code == 404:
            raise NotFoundError(str(body.get("error", "not found")))
        if r.status_code == 409:
            raise ConflictError(str(body.get("error", "conflict")))
        if r.status_code >= 500:
            raise TemporaryError(f"the controller answered {r.status_code}: "
                                 f"{body.get('error', '')}")
        return r.status_code, body

    def close(self) -> None:
        self.http.close()


def deploy_remote(server: str, path: str, *, version: str | None, timeout: float | None,
                  poll: float = 1.0) -> int:
    """Submit ``path`` to ``server``, print progress until it ends; returns the exit code."""
    from canary.console.progress import LineReporter, LiveReporter

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise InputError(f"cannot read the file: {exc.strerror}", file=path) from exc
    client = Follower(server, token=os.environ.get("CANARY_TOKEN"))
    try:
        absolute = os.path.abspath(path)
        code, body = client.call("POST", "/api/v1/rollouts", json={
            "document": text, "version": version, "file": absolute})
        if code == 400:
            # The controller parsed the file under its absolute name; name it as typed.
            file = body.get("file")
            raise InputError(str(body.get("message") or body.get("error")),
                             file=path if file == absolute else file, line=body.get("line"),
                             field=body.get("field"))
        if code >= 400:
            raise InputError(f"the controller refused the rollout ({code}): "
                             f"{body.get('error', '')}")
        status = body["rollout"]
        live = sys.stdout.isatty()
        reporter = LiveReporter() if live else LineReporter()
        try:
            reporter.line(f"{'resuming' if body['resumed'] else 'starting'} rollout "
                          f"{status['name']}: {status['service']} "
                          f"{status['stableVersion'] or '?'} -> {status['version']} via "
                          f"{body['router']} on {client.server}; stages "
                          f"{'/'.join(str(w) for w in body['stages'])}%; policy "
                          f"{body['policy']}")
            final = _follow(client, status, after=int(body["eventCount"]), reporter=reporter,
                            timeout=timeout, poll=poll)
        finally:
            reporter.close()
    finally:
        client.close()
    if final is None:
        typer.echo(f"canary: stopped following {status['name']}; the rollout goes on on the "
                   "controller", err=True)
        return Exit.RUNNING
    code = exit_code(final)
    typer.echo(f"{final['name']}: {VERDICTS[code]}: {final['reason'] or final['message']}")
    return code


def _follow(client: Follower, status: dict[str, Any], *, after: int, reporter: Any,
            timeout: float | None, poll: float) -> dict[str, Any] | None:
    """Poll until the rollout ends (its status), or None when told to stop following."""
    stop = {"now": False}

    def on_signal(signum: int, frame: object) -> None:
        stop["now"] = True

    previous = signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    name, rollout_id = status["name"], status["id"]
    try:
        while True:
            _, page = client.call("GET", f"/api/v1/rollouts/{name}/events",
                                  params={"after": after})
            _, status = client.call("GET", f"/api/v1/rollouts/{name}", params={"events": 0})
            if page["id"] != rollout_id or status["id"] != rollout_id:
                raise ConflictError(f"rollout {name!r} was replaced by a newer one")
            after = int(page["next"])
            reporter.tick(state_of(status), [event_of(e) for e in page["events"]])
            if ended(status):
                return status
            if stop["now"] or (timeout is not None and time.monotonic() - started >= timeout):
                return status
            time.sleep(poll)
    except KeyboardInterrupt:
        return None
    finally:
        signal.signal(signal.SIGTERM, previous)


def ended(status: dict[str, Any]) -> bool:
    """As Runner.run: nothing more happens without a human (canary/exits.py)."""
    return exits.ended(Phase(status["phase"]), needs_human=bool(status["needsHuman"]))


def exit_code(status: dict[str, Any]) -> int:
    return exits.for_ending(Phase(status["phase"]), needs_human=bool(status["needsHuman"]))


def event_of(data: dict[str, Any]) -> Event:
    return Event(at=datetime.fromisoformat(data["at"]), kind=data["kind"],
                 message=data["message"], data=data.get("data") or {})


def state_of(s: dict[str, Any]) -> RolloutState:
    """Enough of a RolloutState, from `status -o json`, for the progress reporters."""
    def t(key: str) -> datetime | None:
        return datetime.fromisoformat(s[key]) if s.get(key) else None

    created = t("createdAt")
    assert created is not None
    return RolloutState(
        id=s["id"], name=s["name"], service=s["service"], version=s["version"],
        stable_version=s["stableVersion"], document="", source="", created_at=created,
        updated_at=t("updatedAt") or created, phase=Phase(s["phase"]),
        stage_index=int(s["stage"]) - 1, desired_weight=int(s["desiredWeight"]),
        actual_weight=int(s["canaryWeight"]), stage=StageProgress(pause_until=t("pauseUntil")),
        run=AttemptProgress(
            last_results=tuple(MetricResult.from_json(r) for r in s["analysis"].values()),
            reason=s["reason"], needs_human=bool(s["needsHuman"]),
            finished_at=t("finishedAt")),
        message=s["message"])

