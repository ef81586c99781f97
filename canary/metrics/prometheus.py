"""The Prometheus adapter: instant queries through prometheus-api-client, errors translated.

It fetches numbers and never judges them. Everything the library or requests can raise is
translated here, once: an unreachable, slow or failing Prometheus is a ``MetricsError``
(temporary: the controller retries it), a query Prometheus rejects as malformed is an
``InputError`` carrying Prometheus's own explanation. Retries are off and a timeout is set,
because the library's defaults spend about 6 s retrying a dead server inside one check,
and the controller has its own retry policy.

Credentials may sit in the URL (``http://user:pass@host:9090``); messages and ``repr`` name
the server without them.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3.exceptions
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from canary.errors import CanaryError, InputError, MetricsError
from canary.metrics.base import Sample, Series

# prometheus-api-client reports a non-200 answer only as this text.
_STATUS = re.compile(r"HTTP Status Code (\d+) \((b(?:'.*'|\".*\"))\)", re.DOTALL)


def redact_url(url: str) -> str:
    """``url`` without user, password and query string: safe for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class PrometheusProvider:
    """``MetricsProvider`` backed by the Prometheus HTTP API (``/api/v1/query``)."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"expected an http(s) URL, got {redact_url(url)!r}",
                             field="prometheus.url")
        if timeout <= 0:
            raise InputError(f"timeout must be positive, got {timeout}", field="timeout")
        self.url = redact_url(url.rstrip("/"))
        self.timeout = timeout
        self._client = PrometheusConnect(
            url=url.rstrip("/"),
            retry=Retry(total=0),
            # Annotated int in the library, but it hands the value to requests, which
            # takes float seconds.
            timeout=cast(int, timeout),
        )

    def __repr__(self) -> str:
        return f"PrometheusProvider({self.url!r}, timeout={self.timeout})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PrometheusProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(self, promql: str) -> list[Sample]:
        """Evaluate ``promql`` now; one Sample per series, or one without labels for a scalar.

        Raises MetricsError when Prometheus cannot answer, InputError when it rejects the
        query (bad syntax, or a range vector / string where a number is expected).
        """
        return parse_result(self._raw(promql), source=f"Prometheus at {self.url}")

    def query_within(self, promql: str, timeout: float) -> list[Sample]:
        """``query`` giving up after ``timeout`` seconds if that is shorter than the
        provider's own timeout: a check shares one time budget among its queries."""
        wait = max(0.001, min(self.timeout, timeout))
        return parse_result(self._raw(promql, timeout=wait), source=f"Prometheus at {self.url}")

    def check_query(self, promql: str) -> None:
        """Preflight: InputError if Prometheus rejects ``promql``; MetricsError if it is down."""
        self.query(promql)

    def pin(self, now: float) -> float:
        """The evaluation time for wall-clock ``now``: now, to the millisecond (the
        resolution of Prometheus's timestamps)."""
        return math.floor(now * 1000.0) / 1000.0

    def series_at(self, selector: str, *, at: float, window: float) -> list[Series]:
        """The raw samples of ``selector`` in ``(at - window, at]``: a range selector
        evaluated at the pinned time ``at``, so every reader of one time sees the same
        samples and consecutive spans neither overlap nor leave gaps."""
        promql = f"{selector}[{max(1, math.ceil(window))}s]"
        result = self._raw(promql, call=lambda wait: self._client.custom_query(
            promql, params={"time": f"{at:.3f}"}, timeout=cast(int, wait)))
        return parse_matrix(result, source=f"Prometheus at {self.url}")

    def query_range(self, promql: str, *, start: datetime, end: datetime,
                    step: float) -> list[dict[str, Any]]:
        """The raw matrix (``data.result``) of a range query: one item per series with
        ``metric`` labels and ``values`` [[ts, "v"], ...]. Used by `canary record`."""
        result = self._raw(promql, call=lambda wait: self._client.custom_query_range(
            promql, start_time=start, end_time=end, step=f"{step:g}s",
            timeout=cast(int, wait)))
        if not isinstance(result, list):
            raise MetricsError(f"Prometheus at {self.url} did not answer a matrix")
        return result

    def _raw(self, promql: str, *, timeout: float | None = None,
             call: Callable[[float], Any] | None = None) -> Any:
        where = f"Prometheus at {self.url}"
        wait = self.timeout if timeout is None else timeout
        try:
            if call is not None:
                return call(wait)
            # Annotated int in the library, but requests takes float seconds.
            return self._client.custom_query(promql, timeout=cast(int, wait))
        except PrometheusApiClientException as exc:
            raise _translate_status(str(exc), where=where, promql=promql) from exc
        except requests.ConnectionError as exc:
            if _timed_out(exc):
                raise MetricsError(f"{where} did not answer within {wait:.3g}s") from exc
            reason = "connection refused" if "refused" in str(exc) else "could not connect"
            raise MetricsError(f"{where} is unreachable: {reason}") from exc
        except requests.Timeout as exc:  # a read timeout outside urllib3's retry wrapper
            raise MetricsError(f"{where} did not answer within {wait:.3g}s") from exc
        except (ValueError, KeyError, TypeError) as exc:
            # ValueError: a 200 answer that is not JSON; Key/TypeError: JSON of another shape.
            raise MetricsError(f"{where} did not give a Prometheus API answer: "
                               f"{type(exc).__name__}") from exc
        except requests.RequestException as exc:
            raise MetricsError(f"{where}: the request failed: {type(exc).__name__}") from exc


def _timed_out(exc: requests.ConnectionError) -> bool:
    """Whether a ConnectionError is really a timeout.

    With retries off, urllib3 wraps a read timeout in MaxRetryError, which requests reports
    as a ConnectionError; a connect timeout arrives as ConnectTimeout (also a
    ConnectionError). A refused connection is a NewConnectionError, which urllib3 derives
    from its timeout class for compatibility, hence the exclusion.
    """
    if isinstance(exc, requests.Timeout):
        return True
    reason = getattr(exc.args[0] if exc.args else None, "reason", None)
    return isinstance(reason, urllib3.exceptions.TimeoutError) and not isinstance(
        reason, urllib3.exceptions.NewConnectionError)


def _translate_status(text: str, *, where: str, promql: str) -> CanaryError:
    """The canary error for a non-200 answer, with Prometheus's ``error`` text if any."""
    match = _STATUS.match(text)
    if match is None:
        return MetricsError(f"{where} answered an error: {text[:300]}")
    status = int(match.group(1))
    error_type, error = "", ""
    try:
        body = json.loads(ast.literal_eval(match.group(2)))
        error_type, error = str(body.get("errorType", "")), str(body.get("error", ""))
    except (ValueError, SyntaxError, AttributeError):
        pass  # not Prometheus's JSON (a proxy's error page, say): the status says enough
    if status == 400 and error_type == "bad_data":
        return InputError(f"Prometheus rejected the query {promql!r}: {error}")
    detail = f"{error_type}: {error}" if error else "no Prometheus error text"
    return MetricsError(f"{where} answered HTTP {status} ({detail})")


def parse_result(result: Any, *, source: str = "Prometheus") -> list[Sample]:
    """Samples from the ``data.result`` of an instant query (vector or scalar)."""
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        # A scalar or a string: [time, "value"]; the library drops resultType.
        return [Sample(labels={}, value=_number(result[1]))]
    if not isinstance(result, list):
        raise MetricsError(f"{source} answered a result of an unknown shape")
    samples = []
    for series in result:
        if not isinstance(series, dict):
            raise MetricsError(f"{source} answered a result of an unknown shape")
        if "values" in series:
            raise InputError("the query returns a range vector (a selector with [window]);"
                             " reduce it to one value per series, e.g. with rate() or"
                             " max_over_time()")
        labels = {str(k): str(v) for k, v in series.get("metric", {}).items()}
        try:
            value = series["value"][1]
        except (KeyError, IndexError, TypeError) as exc:
            raise MetricsError(f"{source} answered a series without a value") from exc
        samples.append(Sample(labels=labels, value=_number(value)))
    return samples


def parse_matrix(result: Any, *, source: str = "Prometheus") -> list[Series]:
    """Series from the ``data.result`` of a range-vector instant query (a matrix)."""
    if not isinstance(result, list):
        raise MetricsError(f"{source} answered a result of an unknown shape")
    out = []
    for series in result:
        if not isinstance(series, dict) or not isinstance(series.get("values"), list):
            raise MetricsError(f"{source} answered a result of an unknown shape")
        labels = {str(k): str(v) for k, v in series.get("metric", {}).items()}
        try:
            points = tuple((float(t), _number(v)) for t, v in series["values"])
        except (TypeError, ValueError) as exc:
            raise MetricsError(f"{source} answered a sample that is not [time, value]") from exc
        out.append(Series(labels=labels, points=points))
    return out


def _number(text: Any) -> float:
    """Prometheus sends values as strings: "0.4", "NaN", "+Inf", "-Inf"."""
    try:
        value = float(text)
    except (TypeError, ValueError) as exc:
        raise InputError(f"the query returns {text!r}, not a number") from exc
    return math.nan if math.isnan(value) else value
