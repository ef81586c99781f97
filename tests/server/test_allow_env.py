"""`canary serve --allow-env`: a document posted to the API expands only the variables the
operator allowed; any other ${VAR} is a 400 naming it, and the API tokens never expand."""

from __future__ import annotations

from pathlib import Path

from tests.server.conftest import READ_TOKEN, StartServe
from tests.server.test_hostile import serve, valid_rollout

ENV = {"DEPLOY_TAG": "v7", "SECRET_THING": "hunter2"}


def with_service(tmp_path: Path, service: str) -> str:
    return valid_rollout(tmp_path).replace("service: checkout", f'service: "{service}"')


def test_only_allowed_variables_expand(start_serve: StartServe, tmp_path: Path) -> None:
    ctl = serve(start_serve, tmp_path, "--allow-env", "DEPLOY_*", "--allow-env", "CANARY_*",
                env=ENV)
    ok = ctl.submit(with_service(tmp_path, "shop-${DEPLOY_TAG}"))
    assert ok.status_code == 201, ok.text
    assert ctl.status("shop")["service"] == "shop-v7"
    for service, name in (("${SECRET_THING}", "SECRET_THING"),
                          ("${SECRET_THING:-fallback}", "SECRET_THING"),
                          ("x-${HOME}", "HOME"),
                          # matches CANARY_*, and still never expandable
                          ("${CANARY_API_TOKENS_OPERATOR}", "CANARY_API_TOKENS_OPERATOR"),
                          ("${CANARY_API_TOKENS_READ:-}", "CANARY_API_TOKENS_READ")):
        r = ctl.submit(with_service(tmp_path, service).replace("name: shop", "name: other"))
        assert r.status_code == 400, (service, r.text)
        body = r.json()
        assert name in body["message"] and "--allow-env" in body["message"]
        assert body["field"] == "spec.service" and body["line"] == 6
        assert "hunter2" not in r.text
    listed = ctl.call("GET", "/api/v1/rollouts", token=READ_TOKEN).json()["rollouts"]
    assert [x["name"] for x in listed] == ["shop"]


def test_no_variable_is_allowed_by_default(start_serve: StartServe, tmp_path: Path) -> None:
    ctl = start_serve(f"sqlite:///{tmp_path / 'state.db'}", env=ENV)
    r = ctl.submit(with_service(tmp_path, "shop-${DEPLOY_TAG}"))
    assert r.status_code == 400 and "DEPLOY_TAG" in r.json()["message"]
    assert "allowed: none;" in r.json()["message"]
