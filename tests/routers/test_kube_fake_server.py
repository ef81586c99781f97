"""The fake API server answers the real kubernetes client the way kube-apiserver does.

The Kubernetes routers are only as well tested as this server is faithful, so the
behaviours they rely on are pinned here: status codes and Status bodies, resourceVersion
preconditions, the two patch formats and the refusal of strategic merge for custom objects.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import Configuration, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from canary.routers.kube import api_for
from lab.fake_kube import FakeKube, PatchError, apply_json_patch, merge_patch

G, V, P = "split.smi-spec.io", "v1alpha2", "trafficsplits"
SPLIT = {"apiVersion": f"{G}/{V}", "kind": "TrafficSplit",
         "metadata": {"name": "web", "namespace": "prod", "labels": {"a": "1"}},
         "spec": {"service": "web", "backends": [{"service": "v1", "weight": 100},
                                                 {"service": "v2", "weight": 0}]}}


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube() as server:
        server.create(SPLIT)
        yield server


@pytest.fixture
def api(fake: FakeKube) -> Iterator[CustomObjectsApi]:
    client = api_for(fake.configuration())
    yield client
    client.api_client.close()


def get(api: CustomObjectsApi, name: str = "web", version: str = V) -> Any:
    return api.get_namespaced_custom_object(G, version, "prod", P, name)


def patch(api: CustomObjectsApi, body: Any, content_type: str | None = None) -> Any:
    return api.patch_namespaced_custom_object(G, V, "prod", P, "web", body,
                                              _content_type=content_type)


def status_of(info: pytest.ExceptionInfo[ApiException]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(info.value.body or "{}")
    assert body["kind"] == "Status" and body["code"] == info.value.status
    return body


def test_get_returns_the_object_at_the_version_asked(api: CustomObjectsApi) -> None:
    obj = get(api)
    assert obj["spec"] == SPLIT["spec"] and obj["metadata"]["resourceVersion"]
    assert get(api, version="v1alpha4")["apiVersion"] == f"{G}/v1alpha4"


def test_missing_object_and_unknown_resource_are_different_404s(api: CustomObjectsApi) -> None:
    with pytest.raises(ApiException) as missing:
        get(api, name="nope")
    assert status_of(missing)["details"]["name"] == "nope"
    assert status_of(missing)["message"] == f'{P}.{G} "nope" not found'
    with pytest.raises(ApiException) as unknown:
        get(api, version="v1alpha1")
    assert status_of(unknown)["message"] == "the server could not find the requested resource"


def test_every_write_bumps_resource_version_and_spec_changes_generation(
    api: CustomObjectsApi,
) -> None:
    before = get(api)["metadata"]
    after = patch(api, {"metadata": {"labels": {"b": "2"}}})["metadata"]
    assert int(after["resourceVersion"]) > int(before["resourceVersion"])
    assert after["generation"] == before["generation"]
    assert after["labels"] == {"a": "1", "b": "2"}  # merge patch is the client's default
    spec = patch(api, {"spec": {"service": "web2"}})["metadata"]
    assert spec["generation"] == before["generation"] + 1


def test_json_patch_with_a_passing_test_applies(api: CustomObjectsApi) -> None:
    rv = get(api)["metadata"]["resourceVersion"]
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": rv},
           {"op": "replace", "path": "/spec/backends/1/weight", "value": 5}]
    out = patch(api, ops, "application/json-patch+json")
    assert out["spec"]["backends"][1]["weight"] == 5


def test_json_patch_with_a_failed_test_is_422_invalid(api: CustomObjectsApi,
                                                      fake: FakeKube) -> None:
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
           {"op": "replace", "path": "/spec/backends/1/weight", "value": 5}]
    with pytest.raises(ApiException) as info:
        patch(api, ops, "application/json-patch+json")
    assert info.value.status == 422
    assert status_of(info)["reason"] == "Invalid"
    assert fake.get("TrafficSplit", "prod", "web")["spec"] == SPLIT["spec"]  # all or nothing


def test_a_stale_resource_version_is_a_409_conflict(api: CustomObjectsApi,
                                                   fake: FakeKube) -> None:
    obj = get(api)
    fake.modify("TrafficSplit", "prod", "web", lambda o: o["spec"].update(service="x"))
    obj["spec"]["service"] = "y"
    with pytest.raises(ApiException) as info:
        api.replace_namespaced_custom_object(G, V, "prod", P, "web", obj)
    assert info.value.status == 409
    assert "the object has been modified" in status_of(info)["message"]
    with pytest.raises(ApiException) as merge:
        patch(api, {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}})
    assert merge.value.status == 409


def test_put_needs_a_resource_version(api: CustomObjectsApi) -> None:
    obj = get(api)
    del obj["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as info:
        api.replace_namespaced_custom_object(G, V, "prod", P, "web", obj)
    assert info.value.status == 422


SPLIT_SCHEMA = {"type": "object", "properties": {
    "apiVersion": {"type": "string"}, "kind": {"type": "string"},
    "metadata": {"type": "object"},
    "spec": {"type": "object", "properties": {
        "service": {"type": "string"},
        "backends": {"type": "array", "items": {"type": "object", "properties": {
            "service": {"type": "string"}, "weight": {"type": "integer"}}}},
        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}}}}}}


def test_fields_the_schema_does_not_declare_are_pruned_on_every_write() -> None:
    with FakeKube(schemas={"TrafficSplit": SPLIT_SCHEMA}) as fake:
        split: dict[str, Any] = json.loads(json.dumps(SPLIT))
        stored = fake.create({**split, "status": {"x": 1}, "spec": {
            **split["spec"], "shadow": "dropped", "extra": {"kept": {"a": 1}},
            "labels": {"k": "v"}}})
        assert "status" not in stored and "shadow" not in stored["spec"]
        assert stored["spec"]["extra"] == {"kept": {"a": 1}}
        assert stored["metadata"]["labels"] == {"a": "1"}  # metadata is never pruned
        client = api_for(fake.configuration())
        answer = patch(client, [{"op": "add", "path": "/spec/backends/0/mirror", "value": 5},
                                {"op": "add", "path": "/spec/labels/x", "value": "y"}],
                       "application/json-patch+json")
        client.api_client.close()
        assert answer["spec"]["backends"][0] == {"service": "v1", "weight": 100}
        assert answer["spec"]["labels"] == {"k": "v", "x": "y"}
        assert fake.get("TrafficSplit", "prod", "web") == answer


def test_strategic_merge_patch_is_refused_for_custom_objects(api: CustomObjectsApi) -> None:
    with pytest.raises(ApiException) as info:
        patch(api, {"spec": {"service": "x"}}, "application/strategic-merge-patch+json")
    assert info.value.status == 415
    assert status_of(info)["reason"] == "UnsupportedMediaType"


def test_a_token_is_required_when_configured() -> None:
    with FakeKube(token="s3cret") as fake:
        fake.create(SPLIT)
        good = api_for(fake.configuration())
        bad = api_for(_no_token(fake))
        try:
            assert get(good)["metadata"]["name"] == "web"
            with pytest.raises(ApiException) as info:
                get(bad)
            assert info.value.status == 401
        finally:
            good.api_client.close()
            bad.api_client.close()


def _no_token(fake: FakeKube) -> Configuration:
    cfg = fake.configuration()
    cfg.api_key = {}
    return cfg


def test_injected_failures_count_down_and_are_recorded(api: CustomObjectsApi,
                                                       fake: FakeKube) -> None:
    fake.fail_next(500, times=2, methods=("GET",))
    for _ in range(2):
        with pytest.raises(ApiException):
            get(api)
    assert get(api)["metadata"]["name"] == "web"
    assert [r.status for r in fake.requests] == [500, 500, 200]


@pytest.mark.parametrize("ops, expected", [
    ([{"op": "add", "path": "/a/-", "value": 3}], {"a": [1, 2, 3], "b": {"c": 1}}),
    ([{"op": "add", "path": "/a/0", "value": 0}], {"a": [0, 1, 2], "b": {"c": 1}}),
    ([{"op": "remove", "path": "/b/c"}], {"a": [1, 2], "b": {}}),
    ([{"op": "move", "from": "/b/c", "path": "/d"}], {"a": [1, 2], "b": {}, "d": 1}),
    ([{"op": "copy", "from": "/a/1", "path": "/b/e~1f"}], {"a": [1, 2], "b": {"c": 1, "e/f": 2}}),
])
def test_json_patch_operations(ops: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    assert apply_json_patch({"a": [1, 2], "b": {"c": 1}}, ops) == expected


@pytest.mark.parametrize("ops", [
    [{"op": "replace", "path": "/missing", "value": 1}],
    [{"op": "remove", "path": "/a/5"}],
    [{"op": "test", "path": "/a/0", "value": 9}],
    [{"op": "frobnicate", "path": "/a"}],
])
def test_json_patch_errors(ops: list[dict[str, Any]]) -> None:
    with pytest.raises(PatchError):
        apply_json_patch({"a": [1, 2]}, ops)


def test_merge_patch_nulls_delete_and_lists_replace() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}, "l": [1, 2]},
                       {"a": {"b": None}, "l": [3]}) == {"a": {"c": 2}, "l": [3]}
