"""Run one hook: a command or an HTTP call, with a timeout, retries and backoff.

Every invocation carries an idempotency key (env ``CANARY_IDEMPOTENCY_KEY``, header
``Idempotency-Key``) that stays the same across retries and controller restarts, so a
team's script can tell "again" from "new". The hook also gets the rollout's context
(``CANARY_ROLLOUT``, ``CANARY_STAGE``, ``CANARY_WEIGHT``, versions) as environment
variables or as the JSON body.

What a hook prints or answers is kept (truncated) for status and alerts; secrets from
``${VAR}`` are masked before the cut, so half a secret cannot survive at the edge.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections.abc import Callable, Mapping

import httpx

from canary.model import HookResult
from canary.secrets import redact_known
from canary.specs import HookCall

MAX_KEPT = 16_000


def run_hook(call: HookCall, *, key: str, timeout: float, retries: int, backoff: float,
             context: Mapping[str, str], cwd: str,
             sleep: Callable[[float], None] = time.sleep,
             on_line: Callable[[str], None] | None = None) -> HookResult:
    """Try ``1 + retries`` times with exponential backoff and jitter; never raises."""
    last = HookResult(key=key, ok=False, message="not run")
    for attempt in range(1, retries + 2):
        last = _once(call, key=key, timeout=timeout, context=context, cwd=cwd)
        last = HookResult(key=key, ok=last.ok, message=last.message, output=last.output,
                          attempts=attempt)
        if on_line is not None:
            on_line(f"hook attempt {attempt}: {last.message}")
        if last.ok or attempt > retries:
            return last
        delay = backoff * 2 ** (attempt - 1)
        sleep(delay * random.uniform(0.5, 1.0))  # jitter: retries of many hooks spread out
    return last


def _once(call: HookCall, *, key: str, timeout: float, context: Mapping[str, str],
          cwd: str) -> HookResult:
    if call.command:
        return _command(call, key=key, timeout=timeout, context=context, cwd=cwd)
    return _http(call, key=key, timeout=timeout, context=context)


def _command(call: HookCall, *, key: str, timeout: float, context: Mapping[str, str],
             cwd: str) -> HookResult:
    env = {**os.environ, **dict(call.env), **{f"CANARY_{k.upper()}": v for k, v in
                                              context.items()},
           "CANARY_IDEMPOTENCY_KEY": key}
    workdir = os.path.join(cwd, call.workdir) if call.workdir else cwd
    try:
        done = subprocess.run(list(call.command), cwd=workdir, env=env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, str) else ""
        return HookResult(key=key, ok=False, output=redact_known(out)[-MAX_KEPT:],
                          message=f"{call.describe()} timed out after {timeout:g}s")
    except OSError as exc:
        return HookResult(key=key, ok=False,
                          message=f"cannot run {call.command[0]!r}: {exc.strerror}")
    output = redact_known(done.stdout + done.stderr)[-MAX_KEPT:]
    if done.returncode != 0:
        tail = redact_known(done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
        return HookResult(key=key, ok=False, output=output,
                          message=f"{call.describe()} exited {done.returncode}: "
                                  f"{tail[0][:300]}")
    return HookResult(key=key, ok=True, output=output, message=f"{call.describe()} succeeded")


def _http(call: HookCall, *, key: str, timeout: float, context: Mapping[str, str]) -> HookResult:
    headers = {**dict(call.headers), "Idempotency-Key": key}
    what = call.describe()  # method and host only: URLs and headers may hold secrets
    try:
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            r = client.request(call.method, call.url, headers=headers,
                               json={**dict(context), "idempotencyKey": key})
    except httpx.TimeoutException:
        return HookResult(key=key, ok=False, message=f"{what} timed out after {timeout:g}s")
    except httpx.HTTPError as exc:
        return HookResult(key=key, ok=False, message=f"{what} failed: {type(exc).__name__}")
    body = redact_known(r.text)[:2000]
    if r.status_code >= 300:
        return HookResult(key=key, ok=False, output=body,
                          message=f"{what} answered HTTP {r.status_code}")
    return HookResult(key=key, ok=True, output=body,
                      message=f"{what} answered HTTP {r.status_code}")
