"""Deliver a notification as JSON over HTTP, boundedly.

Alerts go out while a rollback is in progress, so delivery must never hold the controller
for long: every try has a timeout, the whole send has a ``deadline``, and a retry that
would end past the deadline is not started. Connection errors, timeouts and 5xx are
retried with exponential backoff; 429 waits for ``Retry-After`` (up to
``max_retry_after``); any other 4xx is final at once, since the same payload will be
refused again. Every HTTP notifier posts through :func:`exchange_json`; the Slack bot also
hands it a judge that reads the answer (an API's ``ok: false`` inside a 200).

Errors name the receiver only as ``scheme://host/***``. The final ``NotifyError`` is not
chained to the httpx exception on purpose: that exception carries the request, whose URL
is the secret, and error reporters print chained exceptions whole.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from canary.clock import Clock, SystemClock
from canary.errors import InputError, NotifyError
from canary.secrets import mask_url, redact, secret_forms

log = logging.getLogger("canary.notify")

USER_AGENT = "canary-notify/1"


@dataclass(frozen=True)
class Delivery:
    """How hard to try. ``retries`` counts tries after the first; ``deadline`` bounds the
    whole send, waits included, in seconds."""

    timeout: float = 5.0
    retries: int = 3
    backoff: float = 0.5
    deadline: float = 10.0
    max_retry_after: float = 10.0

    def __post_init__(self) -> None:
        if self.timeout <= 0 or self.deadline <= 0:
            raise InputError("notification timeout and deadline must be positive")
        if self.retries < 0 or self.backoff < 0 or self.max_retry_after < 0:
            raise InputError("notification retries, backoff, max_retry_after must be >= 0")


@dataclass(frozen=True)
class Attempt:
    """What one POST came to: delivered, worth another try (after ``delay``), or final."""

    ok: bool
    retryable: bool = False
    problem: str = ""
    delay: float | None = None  # the receiver's own Retry-After, if it gave one
    answer: Any = None  # what a judge read from an accepted answer


DEFAULT_DELIVERY = Delivery()  # 5 s per try, 3 retries from 0.5 s, 10 s in all

# Reads a 2xx answer: an API such as Slack's says "not done" inside a 200 (``ok: false``).
Judge = Callable[[httpx.Response, datetime], Attempt]


def exchange_json(
    url: str,
    body: bytes,
    *,
    headers: dict[str, str],
    delivery: Delivery,
    client: httpx.Client | None = None,
    clock: Clock | None = None,
    what: str = "webhook",
    judge: Judge | None = None,
    secrets: frozenset[str] = frozenset(),
) -> tuple[int, Any]:
    """POST ``body`` until it is accepted (2xx): the tries it took and what ``judge`` read
    from the accepted answer (None without a judge). Raises NotifyError, naming the
    receiver masked, when it was refused, retries ran out or the deadline would pass;
    ``clock`` decides the waits, so tests move time instead. ``secrets`` (a token sent
    in a header) are redacted from every error text, beside the URL's own."""
    clock = clock or SystemClock()
    hidden = secret_forms(url) | secrets
    target = mask_url(url)
    start = clock.now()
    tries = 0
    problem = "deadline reached before the first try"

    def elapsed() -> float:
        return (clock.now() - start).total_seconds()

    def give_up(reason: str, *, retry_after: float = 1.0) -> NotifyError:
        return NotifyError(
            f"{what} to {target} failed after {tries} tr{'y' if tries == 1 else 'ies'} "
            f"in {elapsed():.1f}s: {reason}",
            retry_after=retry_after,
        )

    with nullcontext(client) if client is not None else httpx.Client() as http:
        while (remaining := delivery.deadline - elapsed()) > 0:
            tries += 1
            result = _post_once(http, url, body, headers, timeout=min(delivery.timeout, remaining),
                                secrets=hidden, now=clock.now, judge=judge)
            if result.ok:
                return tries, result.answer
            problem = result.problem
            if not result.retryable:
                raise give_up(f"{problem} (not retried)")
            delay = delivery.backoff * 2 ** (tries - 1) if result.delay is None else result.delay
            if tries > delivery.retries:
                raise give_up(f"{problem}; no retries left", retry_after=delay)
            if result.delay is not None and delay > delivery.max_retry_after:
                raise give_up(f"{problem}; Retry-After {delay:g}s exceeds the "
                              f"{delivery.max_retry_after:g}s we wait", retry_after=delay)
            if elapsed() + delay >= delivery.deadline:
                raise give_up(f"{problem}; a retry in {delay:g}s would pass the "
                              f"{delivery.deadline:g}s deadline", retry_after=delay)
            log.warning("%s to %s: %s; retry %d/%d in %.2gs", what, target, problem, tries,
                        delivery.retries, delay)
            clock.sleep(delay)
    raise give_up(f"{problem}; deadline of {delivery.deadline:g}s reached")


def _post_once(
    http: httpx.Client,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float,
    secrets: frozenset[str] | set[str],
    now: Callable[[], datetime],
    judge: Judge | None = None,
) -> Attempt:
    try:
        response = http.post(url, content=body, headers=headers, timeout=timeout,
                             follow_redirects=False)
    except httpx.TimeoutException as exc:
        return Attempt(ok=False, retryable=True,
                    problem=f"{type(exc).__name__} (timeout {timeout:.2g}s)")
    except httpx.HTTPError as exc:
        return Attempt(ok=False, retryable=True,
                    problem=f"{type(exc).__name__}: {redact(str(exc), secrets)}")
    status = response.status_code
    if 200 <= status < 300:
        return Attempt(ok=True) if judge is None else judge(response, now())
    answer = redact(response.text[:200].strip(), secrets)
    problem = f"HTTP {status}" + (f" {answer!r}" if answer else "")
    if status == 429:
        return Attempt(ok=False, retryable=True, problem=problem,
                    delay=parse_retry_after(response.headers.get("Retry-After"), now()))
    if status >= 500:
        return Attempt(ok=False, retryable=True, problem=problem)
    return Attempt(ok=False, retryable=False, problem=problem)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date); None if
    absent or unreadable, so the caller falls back to its own backoff."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None
