"""HTTP adapter: for routers that expose the split as a small JSON resource.

``PUT url`` with ``{"stable": N, "canary": N}`` changes the split; ``GET url`` returns the
split in effect in the same shape. An optional bearer token is read from the environment
variable named by ``tokenEnv`` when the router is built; the token is kept out of
``repr`` and out of every error message (it is masked if a server echoes it back). The URL
is shown without its user, password, query and fragment: any of them may be a credential.
"""

from __future__ import annotations

import functools
import os
import ssl
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
from pydantic import AnyHttpUrl, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

from canary.durations import parse_duration
from canary.errors import InputError, RouterError
from canary.model import Weights
from canary.secrets import mask_url, register_secret, spellings

Seconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]


@functools.cache
def _tls() -> ssl.SSLContext:
    # Built once: loading the CA bundle costs ~80 ms, and the controller calls every tick.
    return httpx.create_ssl_context()


class Config(BaseModel):
    """The ``spec.router`` block for ``type: http``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel,
                              frozen=True)

    url: AnyHttpUrl
    token_env: str | None = None
    timeout: Seconds = 5.0


@dataclass(frozen=True)
class HttpRouter:
    """Reads and writes the split as JSON at one URL."""

    url: str
    token: str | None = field(default=None, repr=False)
    timeout: float = 5.0

    def describe(self) -> str:
        return f"http {self.where}"

    @property
    def where(self) -> str:
        """The URL as shown in messages: scheme, host, port and path only."""
        try:
            parts = urlsplit(self.url)
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            return mask_url(self.url)
        return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"

    def ensure(self) -> None:
        self.get_weights()

    def get_weights(self) -> Weights:
        response = self._request("GET")
        try:
            data: Any = response.json()
            stable, canary = data["stable"], data["canary"]
            if not all(type(v) is int for v in (stable, canary)) or stable + canary != 100 \
                    or not 0 <= canary <= 100:
                raise ValueError("not a split of 100%")
            return Weights(canary=canary)
        except (ValueError, KeyError, TypeError) as exc:
            raise RouterError(f"GET {self.where} answered {self._mask(response.text[:200])!r}; "
                              'expected {"stable": N, "canary": N} summing to 100') from exc

    def set_weights(self, weights: Weights) -> None:
        self._request("PUT", json={"stable": weights.stable, "canary": weights.canary})

    def _request(self, method: str, *, json: dict[str, int] | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            with httpx.Client(timeout=self.timeout, verify=_tls()) as client:
                response = client.request(method, self.url, json=json, headers=headers)
        except httpx.TimeoutException as exc:
            raise RouterError(f"{method} {self.where} timed out after {self.timeout}s") from exc
        except httpx.HTTPError as exc:
            raise RouterError(f"{method} {self.where} failed: {self._mask(str(exc))}; check the "
                              "url and that the router service is running") from exc
        if response.is_error:
            hint = " (check the token in tokenEnv)" if response.status_code in (401, 403) else ""
            raise RouterError(f"{method} {self.where} answered HTTP {response.status_code}{hint}: "
                              f"{self._mask(response.text.strip()[:200])}")
        return response

    def _mask(self, text: str) -> str:
        return text.replace(self.token, "***") if self.token else text


def from_config(config: Config) -> HttpRouter:
    token = None
    if config.token_env is not None:
        token = os.environ.get(config.token_env)
        if not token:
            raise InputError(f"environment variable {config.token_env} (named in tokenEnv) "
                             "is not set", field="router.tokenEnv")
        register_secret(*spellings(token))  # masked in every error and log, like ${VAR}
    return HttpRouter(url=str(config.url), token=token, timeout=config.timeout)
