"""Two `canary serve` replicas on one store: every rollout is driven by exactly one of them,
and when one is killed with SIGKILL its rollouts continue on the other within a lease period,
without any step done twice. Run on SQLite and on PostgreSQL (claim_rollouts)."""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from canary.rollout.wiring import submit
from canary.store.lease import LeaseOwner
from canary.store.sqlite import SQLiteStore
from lab.proc import wait_until
from tests.e2e.conftest import Lab, Stack, write_policy, write_rollout
from tests.server.conftest import (
    READ_TOKEN,
    Controller,
    MultiHAProxy,
    StartServe,
    rollout_yaml,
    start_multi_haproxy,
    wait_phase,
)

NAMES = ["svc-a", "svc-b", "svc-c", "svc-d"]
LEASE_TTL = 6.0


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    return str(request.getfixturevalue("postgres_dsn"))


@pytest.fixture()
def haproxy(lab: Lab, tmp_path: Path) -> Iterator[MultiHAProxy]:
    hap = start_multi_haproxy(tmp_path / "haproxy", NAMES,
                              stable_port=int(lab.apps["1.0.0"].info["port"]),
                              canary_port=int(lab.apps["2.0.0"].info["port"]))
    yield hap
    for load in hap.loads:
        load.stop()
    hap.server.stop()


def owners(ctl: Controller) -> set[str]:
    """The rollouts this controller drives, from its own /metrics."""
    text = ctl.call("GET", "/metrics", token=None).text
    return set(re.findall(r'canary_rollout_canary_weight\{rollout="([^"]+)"', text))


def kinds(ctl: Controller, name: str) -> list[str]:
    r = ctl.call("GET", f"/api/v1/rollouts/{name}/events", token=READ_TOKEN)
    return [e["kind"] for e in r.json()["events"]]


class OwnerWatch:
    """Samples both controllers' ownership every 100 ms; records any double ownership."""

    def __init__(self, controllers: dict[str, Controller]) -> None:
        self.controllers = controllers
        self.seen: dict[str, set[str]] = defaultdict(set)
        self.overlaps: list[tuple[str, set[str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            now: dict[str, set[str]] = defaultdict(set)
            for label, ctl in self.controllers.items():
                if ctl.server.alive():
                    try:
                        for name in owners(ctl):
                            now[name].add(label)
                    except Exception:  # noqa: BLE001 - a controller being killed
                        continue
            for name, labels in now.items():
                self.seen[name] |= labels
                if len(labels) > 1:
                    self.overlaps.append((name, labels))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def test_two_replicas_split_rollouts_and_survive_kill_9(lab: Lab, haproxy: MultiHAProxy,
                                                         start_serve: StartServe,
                                                         store_url: str,
                                                         tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "policy.yaml", lab.prometheus_url)
    a = start_serve(store_url, name="a", lease_ttl=f"{LEASE_TTL:g}s")
    b = start_serve(store_url, name="b", lease_ttl=f"{LEASE_TTL:g}s")
    watch = OwnerWatch({"a": a, "b": b})
    try:
        for i, name in enumerate(NAMES):  # a load balancer would spread submissions so
            via = a if i < 2 else b
            doc = rollout_yaml(name, socket=haproxy.socket, backend=name, version="2.0.0",
                               policy=policy, pause="6s")
            assert via.submit(doc).status_code == 201
        wait_until(lambda: all(kinds(a, n).count("stage-reached") >= 2 for n in NAMES),
                   timeout=90, what="every rollout at its second stage")
        before = {n: set(labels) for n, labels in watch.seen.items()}
        # Each rollout has exactly one owner; which replica wins one is a race between the
        # receiving replica's adoption and the other's discovery, so only its count is fixed.
        assert set(before) == set(NAMES) and all(len(v) == 1 for v in before.values())
        of_b = {n for n, v in before.items() if v == {"b"}}
        assert of_b and len(of_b) < len(NAMES), before  # both replicas are working
        b.kill9()
        killed = time.monotonic()
        wait_until(lambda: of_b <= owners(a), timeout=LEASE_TTL + 5,
                   what="a to take over b's rollouts")
        took = time.monotonic() - killed
        assert took <= LEASE_TTL, f"takeover took {took:.1f}s"
        for name in NAMES:
            assert wait_phase(a, name, {"succeeded", "failed", "aborted"},
                              timeout=120)["phase"] == "succeeded"
    finally:
        watch.stop()
    assert watch.overlaps == []  # never two owners at once
    for name in NAMES:
        events = kinds(a, name)
        assert events.count("stage-started") == 4, (name, events)  # no step done twice
        assert events.count("stage-reached") == 4, (name, events)
        assert events.count("promoted") == 1
        assert haproxy.all_on(name, "canary-1")
    log = a.log()
    for name in of_b:
        assert f"driving rollout {name}" in log
    print(f"{store_url.split(':')[0]}: b's rollouts continued on a {took:.2f}s after kill -9")


def test_a_lease_held_from_another_host_is_taken_only_once_it_expires(
        lab: Lab, stack_for: Callable[..., Stack], start_serve: StartServe,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Another host's process cannot be proven gone: only the lease's expiry frees it."""
    stack = stack_for("2.0.0")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", stack.slack.url())  # submit() reads it here
    policy = write_policy(stack.dir / "policy.yaml", lab.prometheus_url)
    rollout = write_rollout(stack, version="2.0.0", policy=policy, pause="2s")
    store = SQLiteStore(stack.store.removeprefix("sqlite:///"))
    elsewhere = LeaseOwner(id="other-host:4242:0000", host="other-host", pid=4242)
    try:
        submit(rollout.read_text(), file=str(rollout), version=None, store=store,
               now=datetime.now(UTC))
        store.acquire_lease("checkout", elsewhere, ttl=5, now=datetime.now(UTC))
        expires = time.monotonic() + 5
    finally:
        store.close()
    ctl = start_serve(stack.store, lease_ttl="4s",
                      env={"SLACK_WEBHOOK_URL": stack.slack.url()})
    ready = time.monotonic()  # a loaded machine may start the controller after the expiry
    wait_until(lambda: "driving rollout checkout" in ctl.log(), timeout=30,
               what="the controller to take the expired lease")
    taken = time.monotonic()
    late = taken - max(expires, ready)
    assert taken >= expires, "taken while another host's lease was still valid"
    assert late <= 4, f"taken {late:.1f}s after expiry: more than a lease period"
    assert wait_phase(ctl, "checkout", {"succeeded", "failed"}, timeout=90)["phase"] \
        == "succeeded"
    print(f"lease from another host taken {late:.2f}s after it expired")
