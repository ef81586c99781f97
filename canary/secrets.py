r"""Keep secrets out of repr, error text, stored events, alerts and logs.

A Slack incoming-webhook URL *is* the credential: anyone holding it can post to the
channel. So notifiers show only ``scheme://host/***``. More generally every value a rollout
file takes from the environment through ``${VAR}`` is treated as a secret: the files are
expanded (``canary.config.spec``, ``canary.config.policyfile``) and each such value is
registered here (:func:`register_environment_values`), and a few chokepoints mask every
registered secret, so that no adapter can forget to:

- :class:`canary.errors.CanaryError` masks its message (every adapter error, router errors
  included, passes through it before reaching a state, an event, an alert or the CLI);
- :class:`canary.model.Event` and :class:`canary.model.HookResult` mask their text (the
  only ways anything reaches either store);
- a log-record factory masks every log record of the process when it is created (httpx
  logs request URLs at INFO from inside the library: no per-client hook runs earlier).

A secret is masked in every spelling that text around it may use: as is, JSON-escaped
(``\/``, ``\"``, ``\uXXXX``), URL-encoded, and, for a URL's ``user:password``, base64 as in
a basic-auth header.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import traceback
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

MASK = "***"

# Values shorter than this are not masked. ``${REPLICAS}`` = "3", ``${PAUSE}`` = "30s" or a
# port are not secrets, and masking them would replace every "3" of every message (stage
# numbers, weights, exit codes) with *** and make status unreadable. A credential that short
# would be guessed in moments anyway, so masking it would protect nothing.
MIN_SECRET_LENGTH = 6

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None  # every secret, longest first; rebuilt on change
_installed = False


def mask_url(url: str) -> str:
    """``https://hooks.slack.com/***``: enough to tell which service, nothing to reuse.

    User info, path, query and fragment are dropped; the port is kept (it tells two local
    receivers apart in tests and is no secret).
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return MASK
    if not parts.scheme or not host:
        return MASK
    return f"{parts.scheme}://{host}{port}/{MASK}"


def secret_forms(url: str) -> set[str]:
    """The spellings of ``url`` that may show up in text: as given, as httpx renders it,
    and its path-and-query alone (the part that carries the token)."""
    import httpx  # here: every canary import loads this module, few need httpx

    forms = {url}
    try:
        rendered = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return forms
    forms.add(str(rendered))
    tail = rendered.raw_path.decode("ascii", "replace")
    if len(tail) > 1:  # "/" alone says nothing and would mangle every log line
        forms.add(tail)
    return {f for f in forms if f}


def redact(text: str, secrets: set[str] | frozenset[str]) -> str:
    """Replace every occurrence of every secret, longest first (a URL before its path)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text


def redact_known(text: str) -> str:
    """Redact every secret registered in this process, in every spelling registered."""
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(MASK, text)


def redact_data(value: Any) -> Any:
    """``value`` with every string inside (mapping values, list items) redacted."""
    if _pattern is None:
        return value
    if isinstance(value, str):
        return redact_known(value)
    if isinstance(value, Mapping):
        return {k: redact_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_data(v) for v in value)
    return value


def spellings(value: str) -> set[str]:
    """How ``value`` may appear in text that quotes it: raw, JSON-escaped (ASCII-only or
    not, ``/`` escaped or not, ``<>&`` escaped as Go does), and URL-encoded."""
    forms = {value, quote(value, safe=""), quote(value), quote_plus(value)}
    for ensure_ascii in (True, False):
        escaped = json.dumps(value, ensure_ascii=ensure_ascii)[1:-1]
        forms |= {escaped, escaped.replace("/", "\\/")}
        forms.add(escaped.replace("<", "\\u003c").replace(">", "\\u003e")
                  .replace("&", "\\u0026"))
    forms |= {json.dumps(f)[1:-1] for f in forms}  # quoted twice: JSON text inside JSON
    return forms


def basic_auth_forms(url: str) -> set[str]:
    """For ``scheme://user:password@host``: the password, ``user:password`` and its base64
    (the ``Authorization: Basic`` header an HTTP client derives from it)."""
    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError:
        return set()
    if not password:
        return set()
    forms: set[str] = set()
    for pair in (f"{user or ''}:{password}", f"{unquote(user or '')}:{unquote(password)}"):
        encoded = base64.b64encode(pair.encode()).decode()
        forms |= {pair, encoded, encoded.rstrip("=")}
    forms |= {password, unquote(password)}
    return forms


def register_expanded(values: list[str], *, within: str) -> None:
    """Register the values ``${VAR}`` expanded to, all spellings. ``within`` is the whole
    string they were expanded into: when it is a URL whose password came from the
    environment, the basic-auth spellings of ``user:password`` are secret too."""
    kept = [v for v in values if len(v) >= MIN_SECRET_LENGTH]
    if not kept:
        return
    forms: set[str] = set()
    for value in kept:
        forms |= spellings(value)
        if "://" in value:
            forms |= basic_auth_forms(value)
    if "@" in within and any(v in within.split("@", 1)[0] for v in kept):
        forms |= {s for f in basic_auth_forms(within) for s in spellings(f)}
    register_secret(*forms)


# The ${VAR} syntax of canary/config/yamlsource.py.
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def register_environment_values(raw: Any, expanded: Any, env: Mapping[str, str], *,
                                public: frozenset[tuple[str | int, ...]] = frozenset(),
                                path: tuple[str | int, ...] = ()) -> None:
    """Register every value ``raw`` (a parsed document) took from ``env`` through ``${VAR}``;
    ``expanded`` is the same document interpolated. ``${VAR:-default}`` defaults are
    written in the file and stay visible, and so do values at the ``public`` paths."""
    if isinstance(raw, dict) and isinstance(expanded, dict):
        for key, value in raw.items():
            register_environment_values(value, expanded.get(key), env, public=public,
                                        path=(*path, key))
    elif isinstance(raw, list) and isinstance(expanded, list):
        for i, (value, done) in enumerate(zip(raw, expanded, strict=False)):
            register_environment_values(value, done, env, public=public, path=(*path, i))
    elif isinstance(raw, str) and "${" in raw and isinstance(expanded, str) \
            and path not in public:
        values = [env[m.group(1)] for m in _VAR.finditer(raw) if m.group(1) in env]
        if values:
            register_expanded(values, within=expanded)


def _scrub(record: logging.LogRecord) -> None:
    """Mask the record's final message in place (args folded in); never drops a record."""
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a broken record is the logger's problem
        return
    cleaned = redact_known(message)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        # A traceback quotes third-party exceptions too: format it now, masked (handlers
        # reuse exc_text instead of formatting the exception again).
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        record.exc_text = redact_known(text)


def _install_log_masking() -> None:
    """Every record of the process is masked when created, whichever logger or handler
    (ours, httpx's, uvicorn's) takes it: a filter would have to be put on each of them."""
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if _pattern is not None:
            _scrub(record)
        return record

    logging.setLogRecordFactory(factory)


def register_secret(*values: str) -> None:
    """Remember secrets for masking, and make sure log records are masked."""
    global _installed, _pattern
    with _lock:
        before = len(_secrets)
        # Never a short string, whatever its source (a URL's one-letter password, a
        # fuzzed file): masking "t" would wreck every message (see MIN_SECRET_LENGTH).
        _secrets.update(v for v in values if len(v) >= MIN_SECRET_LENGTH)
        if len(_secrets) != before:
            ordered = sorted(_secrets, key=len, reverse=True)  # a URL before its path
            _pattern = re.compile("|".join(map(re.escape, ordered)))
        if _installed:
            return
        _installed = True
    _install_log_masking()


def register_url(url: str) -> None:
    register_secret(*secret_forms(url))
