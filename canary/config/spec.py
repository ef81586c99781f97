"""Rollout and policy files (docs/contract.md): YAML in, validated frozen values out.

Pydantic validates at this edge only; every error names file, line, field and what was
expected. Unknown fields are refused. The rest of canary sees canary.model values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    Field,
    model_validator,
)

from canary import defaults
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
from canary.config.specbase import (
    MAX_VERSION,
    Duration,
    Name,
    Version,
    _Metadata,
    _Model,
    _validate,
)
from canary.config.strategy import BlueGreenModel, StageModel, Strategy, build_stages
from canary.config.yamlsource import Document, control_character, interpolate, load_file, load_text
from canary.errors import InputError
from canary.model import (
    HookCall,
    HookSpec,
    MigrationSpec,
    NotificationSpec,
    RolloutSpec,
    RouterSpec,
)
from canary.notify.registry import check_entry, default_events
from canary.notify.templates import EVENT_NAMES


class _Lint(_Model):
    paths: list[str] = Field(default_factory=list)
    command: list[str] = Field(default_factory=list)
    dialect: Literal["postgres", "postgresql", "mysql", "sqlite"] = "postgres"

    @model_validator(mode="after")
    def _one(self) -> _Lint:
        if bool(self.paths) == bool(self.command):
            raise ValueError("give exactly one of 'paths' (SQL files, directories, globs) or "
                             "'command' (prints the SQL, e.g. alembic upgrade head --sql)")
        return self


class _Compat(_Model):
    command: list[str] = Field(min_length=1)
    timeout: Duration = defaults.GATE_TIMEOUT


class _Migration(_Model):
    command: list[str] = Field(default_factory=list)
    timeout: Duration = defaults.GATE_TIMEOUT
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = None
    idempotent: bool = False
    lint: _Lint | None = None
    compat_check: _Compat | None = Field(default=None, alias="compatCheck")

    @model_validator(mode="after")
    def _something(self) -> _Migration:
        if not (self.command or self.lint or self.compat_check):
            raise ValueError("a migration gate needs a command, a lint or a compatCheck")
        return self


class _Notification(_Model):
    type: Literal["slack", "webhook", "teams", "pagerduty"]
    webhook_url: str | None = Field(default=None, alias="webhookUrl", min_length=1)
    events: list[str] = Field(default_factory=list)
    secret_env: str | None = Field(default=None, alias="secretEnv")
    # Slack bot mode: the token's variable name (never the token), channel, API base.
    bot_token_env: str | None = Field(default=None, alias="botTokenEnv",
                                      pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    channel: str | None = Field(default=None, min_length=1)
    api_url: str | None = Field(default=None, alias="apiUrl", pattern=r"^https?://")
    # PagerDuty: the routing key's variable name (never the key); templates: per event.
    routing_key_env: str | None = Field(default=None, alias="routingKeyEnv",
                                        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    templates: dict[str, str] = Field(default_factory=dict, json_schema_extra={
        "propertyNames": {"enum": list(EVENT_NAMES)}})

    @model_validator(mode="after")
    def _one_mode(self) -> _Notification:
        if self.type in ("teams", "pagerduty") or self.routing_key_env is not None:
            check_entry(self.type, set(self.model_fields_set), templates=self.templates)
            return self
        bot = self.bot_token_env is not None
        if self.type == "webhook" and (bot or self.channel or self.api_url):
            raise ValueError("a webhook takes webhookUrl; botTokenEnv, channel and apiUrl "
                             "are for type slack")
        if self.type == "webhook" and self.webhook_url is None:
            raise ValueError("a webhook needs webhookUrl")
        if bot == (self.webhook_url is not None):
            raise ValueError("give exactly one of 'webhookUrl' (incoming webhook) or "
                             "'botTokenEnv' with 'channel' (bot token, threaded per rollout)")
        if bot and not self.channel:
            raise ValueError("botTokenEnv needs a channel to post to")
        if not bot and (self.channel or self.api_url):
            raise ValueError("channel and apiUrl go with botTokenEnv; an incoming webhook "
                             "posts to its own channel")
        return self


class _Http(_Model):
    url: str = Field(pattern=r"^https?://")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)


class _Call(_Model):
    command: list[str] | None = Field(default=None, min_length=1)
    http: _Http | None = None
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = None

    @model_validator(mode="after")
    def _one(self) -> _Call:
        if (self.command is None) == (self.http is None):
            raise ValueError("give exactly one of 'command' (an argument list) or 'http'")
        return self


class _Hook(_Call):
    name: Name
    timeout: Duration = 60.0
    retries: int = Field(default=2, ge=0, le=20)
    # The first retry's delay doubles per retry: at most an hour, so 20 retries stay a
    # delay time.sleep() and datetime can hold.
    backoff: Duration = Field(default=1.0, le=3600)
    compensate: _Call | None = None


class _Hooks(_Model):
    pre_rollout: list[_Hook] = Field(default_factory=list, alias="preRollout")
    pre_stage: list[_Hook] = Field(default_factory=list, alias="preStage")
    post_stage: list[_Hook] = Field(default_factory=list, alias="postStage")
    confirm_promotion: list[_Hook] = Field(default_factory=list, alias="confirmPromotion")
    promote: list[_Hook] = Field(default_factory=list)
    post_rollout: list[_Hook] = Field(default_factory=list, alias="postRollout")
    rollback: list[_Hook] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> _Hooks:
        for point in type(self).model_fields:
            names = [h.name for h in getattr(self, point)]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"hook names must be unique per point: {', '.join(dupes)}")
        return self


class _AnalysisRef(_Model):
    policy: str = Field(default="default", min_length=1, max_length=1024)


class _RolloutSpec(_Model):
    service: Name
    version: Version | None = None
    stable_version: Version | None = Field(default=None, alias="stableVersion")
    router: dict[str, Any]
    migration: _Migration | None = None
    strategy: Strategy = "canary"
    stages: list[StageModel | int] | None = None
    pause: Duration | None = None
    blue_green: BlueGreenModel | None = Field(default=None, alias="blueGreen")
    analysis: _AnalysisRef = _AnalysisRef()
    notifications: list[_Notification] = Field(default_factory=list)
    hooks: _Hooks = _Hooks()
    progress_deadline: Duration | None = Field(default=None, alias="progressDeadline")
    deadline: Duration | None = None


class _Rollout(_Model):
    api_version: Literal["canary/v1"] = Field(alias="apiVersion")
    kind: Literal["Rollout"]
    metadata: _Metadata
    spec: _RolloutSpec


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

