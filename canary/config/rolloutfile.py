"""The shape of a rollout file (docs/contract.md): one pydantic model per block, each
refusing unknown fields and saying what it expects. spec.py validates a document against
``_Rollout`` and turns the result into canary.model values."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from canary import defaults
from canary.config.specbase import Duration, Name, Version, _Metadata, _Model
from canary.config.strategy import BlueGreenModel, StageModel, Strategy
from canary.notify.registry import check_entry
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
