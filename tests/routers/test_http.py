"""HTTP adapter beyond the contract: the bearer token (sent, never shown) and answers
that are not a split."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from canary.errors import InputError, RouterError
from canary.model import Weights
from canary.routers import http
from canary.routers.http import HttpRouter

from .weights_api import WeightsApi

TOKEN = "s3cr3t-token-value"


@pytest.fixture
def api(weights_api: WeightsApi) -> Iterator[WeightsApi]:
    weights_api.split, weights_api.fail, weights_api.body = {"stable": 100, "canary": 0}, \
        False, None
    weights_api.token, weights_api.authorizations = TOKEN, []
    yield weights_api
    weights_api.token = None


def test_token_from_the_environment_is_sent(api: WeightsApi,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_TOKEN", TOKEN)
    router = http.from_config(http.Config.model_validate({"url": api.url,
                                                          "tokenEnv": "ROUTER_TOKEN"}))
    router.set_weights(Weights(canary=5))
    assert router.get_weights() == Weights(canary=5)
    assert api.authorizations == [f"Bearer {TOKEN}"] * 2
    assert TOKEN not in repr(router) and TOKEN not in router.describe()


def test_wrong_token_is_refused_and_masked_in_the_error(api: WeightsApi) -> None:
    wrong = "wrong-token-123"
    router = HttpRouter(url=api.url, token=wrong)
    with pytest.raises(RouterError) as caught:
        router.set_weights(Weights(canary=5))
    message = str(caught.value)
    assert "HTTP 401" in message and "tokenEnv" in message
    assert "bad credentials: Bearer ***" in message  # the server echoed it; we masked it
    assert wrong not in message
    assert api.split == {"stable": 100, "canary": 0}


def test_missing_token_variable_is_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROUTER_TOKEN", raising=False)
    config = http.Config.model_validate({"url": "http://127.0.0.1:1/", "tokenEnv": "ROUTER_TOKEN"})
    with pytest.raises(InputError, match="ROUTER_TOKEN") as caught:
        http.from_config(config)
    assert caught.value.field == "router.tokenEnv"


@pytest.mark.parametrize("body", [b"not json", b'{"stable": 90, "canary": 5}', b"[1, 2]",
                                  b'{"stable": "95", "canary": "5"}'])
def test_answer_that_is_not_a_split_is_a_router_error(api: WeightsApi, body: bytes) -> None:
    api.token, api.body = None, body
    with pytest.raises(RouterError, match="expected"):
        HttpRouter(url=api.url).get_weights()


def test_server_error_is_reported_with_status_and_body(api: WeightsApi) -> None:
    api.token, api.fail = None, True
    with pytest.raises(RouterError, match="HTTP 500: router backend exploded"):
        HttpRouter(url=api.url).set_weights(Weights(canary=5))
