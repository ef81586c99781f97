"""Keep webhook URLs and signing keys out of repr, error text and logs.

A Slack incoming-webhook URL *is* the credential: anyone holding it can post to the
channel. So notifiers show only ``scheme://host/***``, and because httpx logs every
request URL at INFO (``HTTP Request: POST https://hooks.slack.com/services/...``) a
logging filter on the httpx/httpcore loggers redacts every registered secret before a
handler ever sees the record. The filter is process-wide on purpose: the log call is
inside httpx, and there is no per-client hook that runs earlier.
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import urlsplit

import httpx

from canary.errors import InputError

MASK = "***"

# The loggers that may print a request URL (httpx) or request details (httpcore).
_LIBRARY_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)

_lock = threading.Lock()
_secrets: set[str] = set()
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


def check_url(url: str, *, what: str) -> None:
    """InputError (masked) unless ``url`` is an absolute http(s) URL httpx accepts."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise InputError(f"{what} URL is not a valid URL: {mask_url(url)}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InputError(f"{what} URL must be an absolute http(s) URL, got {mask_url(url)}")


def secret_forms(url: str) -> set[str]:
    """The spellings of ``url`` that may show up in text: as given, as httpx renders it,
    and its path-and-query alone (the part that carries the token)."""
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
    """Redact every secret registered in this process."""
    with _lock:
        known = frozenset(_secrets)
    return redact(text, known)


class _RedactingFilter(logging.Filter):
    """Rewrites a record's message with every registered secret masked; never drops it."""

    def filter(self, record: logging.LogRecord) -> bool:
        with _lock:
            known = frozenset(_secrets)
        if not known:
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is the logger's problem
            return True
        cleaned = redact(message, known)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


def register_secret(*values: str) -> None:
    """Remember secrets for log redaction, and make sure the filter is in place."""
    global _installed
    with _lock:
        _secrets.update(v for v in values if v)
        if _installed:
            return
        _installed = True
    redacting = _RedactingFilter()
    for name in _LIBRARY_LOGGERS:
        logging.getLogger(name).addFilter(redacting)


def register_url(url: str) -> None:
    register_secret(*secret_forms(url))
