"""Notifier URLs checked once, where a notifier is built: an absolute http(s) URL httpx
accepts, or an input error that never shows the URL's secret parts."""

from __future__ import annotations

import httpx

from canary.errors import InputError
from canary.secrets import mask_url


def check_url(url: str, *, what: str) -> None:
    """InputError (masked) unless ``url`` is an absolute http(s) URL httpx accepts."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise InputError(f"{what} URL is not a valid URL: {mask_url(url)}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InputError(f"{what} URL must be an absolute http(s) URL, got {mask_url(url)}")
