"""Rollout and policy files (docs/contract.md): YAML in, validated frozen values out.

Pydantic validates at this edge only; every error names file, line, field and what was
expected. Unknown fields are refused. The rest of canary sees canary.model values. The
rollout file's models are in rolloutfile.py, the policy file's in policyfile.py.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from canary.config.notifyfile import check_templates
from canary.config.policyfile import (
    PACKAGE_POLICIES as PACKAGE_POLICIES,
)
from canary.config.policyfile import (
    FamilyName as FamilyName,
)
from canary.config.policyfile import (
    _Policy as _Policy,
)
from canary.config.policyfile import (
    load_policy as load_policy,
)
from canary.config.policyfile import (
    resolve_policy_path as resolve_policy_path,
)
from canary.config.rolloutfile import _Call, _Hooks, _Rollout
from canary.config.specbase import (
    MAX_VERSION,
    _validate,
)
from canary.config.strategy import build_stages
from canary.config.yamlsource import Document, control_character, interpolate, load_file, load_text
from canary.errors import InputError
from canary.notify.registry import default_events
from canary.specs import (
    HookCall,
    HookSpec,
    MigrationSpec,
    NotificationSpec,
    RolloutSpec,
    RouterSpec,
)

# What a rollout is shown by (status, history, alerts): a ${VAR} here is no secret.
_SHOWN = frozenset({("metadata", "name"), ("spec", "service"), ("spec", "version"),
                    ("spec", "stableVersion")})


def load_rollout(path: str, *, version: str | None = None,
                 env: Mapping[str, str] | None = None) -> RolloutSpec:
    return parse_rollout(load_file(path), version=version, env=env)


def parse_rollout(raw: Document, *, version: str | None = None,
                  env: Mapping[str, str] | None = None) -> RolloutSpec:
    if not isinstance(raw.data, dict):
        raise raw.error("expected a mapping with apiVersion, kind, metadata, spec", ())
    from canary.secrets import register_environment_values  # ${VAR} = secret

    doc = interpolate(raw, env)
    register_environment_values(raw.data, doc.data, os.environ if env is None else env,
                                public=_SHOWN)
    m: _Rollout = _validate(_Rollout, doc, doc.data)
    spec = m.spec
    for i, n in enumerate(spec.notifications):
        check_templates(doc, ("spec", "notifications", i, "templates"), n.templates)
    stages, router_block = build_stages(doc, strategy=spec.strategy, stages=spec.stages,
                                        pause=spec.pause, blue_green=spec.blue_green,
                                        router=spec.router)
    router = _router(doc, router_block)
    final_version = version or spec.version
    if not final_version:
        raise doc.error("no version: set spec.version or pass --version", ("spec", "version"))
    if version:  # --version or the API's version: the same rules as spec.version
        bad = control_character(version)
        if bad or len(version) > MAX_VERSION:
            raise InputError(f"the version holds a {bad}" if bad else
                             f"the version is longer than {MAX_VERSION} characters",
                             field="--version")
    mig = spec.migration
    return RolloutSpec(
        name=m.metadata.name, service=spec.service, version=final_version,
        stable_version=spec.stable_version, router=router, stages=stages,
        policy=spec.analysis.policy,
        migration=None if mig is None else MigrationSpec(
            command=tuple(mig.command), timeout=mig.timeout, env=dict(mig.env),
            workdir=mig.workdir, idempotent=mig.idempotent,
            lint_paths=tuple(mig.lint.paths) if mig.lint else (),
            lint_command=tuple(mig.lint.command) if mig.lint else (),
            lint_dialect=mig.lint.dialect if mig.lint else "postgres",
            compat_command=tuple(mig.compat_check.command) if mig.compat_check else (),
            compat_timeout=mig.compat_check.timeout if mig.compat_check else 600.0),
        notifications=tuple(NotificationSpec(
            type=n.type, url=n.webhook_url or "",
            events=tuple(n.events) or default_events(n.type),
            secret_env=n.secret_env, bot_token_env=n.bot_token_env, channel=n.channel or "",
            api_url=n.api_url or "", routing_key_env=n.routing_key_env,
            templates=dict(n.templates))
            for n in spec.notifications),
        hooks=_hook_specs(spec.hooks), progress_deadline=spec.progress_deadline,
        deadline=spec.deadline,
        source=raw.file, base_dir=os.path.dirname(os.path.abspath(raw.file)))


def _call(c: _Call) -> HookCall:
    return HookCall(command=tuple(c.command or ()), url=c.http.url if c.http else "",
                    method=c.http.method if c.http else "POST",
                    headers=dict(c.http.headers) if c.http else {}, env=dict(c.env),
                    workdir=c.workdir)


def _hook_specs(hooks: _Hooks) -> tuple[HookSpec, ...]:
    out = []
    for attr, info in type(hooks).model_fields.items():
        point = info.alias or attr
        for h in getattr(hooks, attr):
            out.append(HookSpec(name=h.name, point=point, call=_call(h), timeout=h.timeout,
                                retries=h.retries, backoff=h.backoff,
                                compensate=_call(h.compensate) if h.compensate else None))
    return tuple(out)


def _router(doc: Document, block: dict[str, Any]) -> RouterSpec:
    from canary.routers.registry import require_feature, router_config_model

    path: tuple[str | int, ...] = ("spec", "router")
    kind = block.get("type")
    if kind is None and "type" in block:
        kind = "null"  # `type: null` is YAML's null, but means the null router here
    if not isinstance(kind, str):
        raise doc.error("required field 'type' is missing or not a string", (*path, "type"))
    try:
        config = router_config_model(kind)
    except InputError as exc:
        raise doc.error(exc.message, (*path, "type")) from None
    for feature in ("match", "sticky"):
        if feature in block:
            try:
                require_feature(kind, feature, field=f"router.{feature}")
            except InputError as exc:
                raise doc.error(exc.message, (*path, feature)) from None
    options = {k: v for k, v in block.items() if k != "type"}
    _validate(config, doc, options, path)
    return RouterSpec(type=kind, options=options)


def load_any(path: str) -> str:
    """Validate a rollout or policy file by its kind; returns the kind."""
    raw = load_file(path)
    kind = raw.data.get("kind") if isinstance(raw.data, dict) else None
    if kind == "Rollout":
        spec = parse_rollout(raw, version=None if _has_version(raw) else "unset")
        try:
            policy_path = resolve_policy_path(spec.policy, base_dir=spec.base_dir)
        except InputError as exc:
            raise raw.error(exc.message, ("spec", "analysis", "policy")) from None
        load_policy(policy_path)
        return "Rollout"
    if kind == "AnalysisPolicy":
        load_policy(path)
        return "AnalysisPolicy"
    raise raw.error("expected kind: Rollout or kind: AnalysisPolicy", ("kind",))


def _has_version(raw: Document) -> bool:
    spec = raw.data.get("spec") if isinstance(raw.data, dict) else None
    return isinstance(spec, dict) and bool(spec.get("version"))


def parse_rollout_text(text: str, *, file: str, version: str | None = None,
                       env: Mapping[str, str] | None = None) -> RolloutSpec:
    return parse_rollout(load_text(text, file=file), version=version, env=env)

