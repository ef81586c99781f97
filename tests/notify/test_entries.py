"""Teams and PagerDuty entries in a rollout file: what they take, what they refuse (with
file, line and field), and the notifiers the registry builds from them."""

from __future__ import annotations

import pytest

from canary.config.spec import parse_rollout_text
from canary.errors import InputError
from canary.notify.pagerduty import DEFAULT_EVENTS_URL, PagerDutyNotifier
from canary.notify.registry import KNOWN_EVENTS, EventFilter, build_notifier
from canary.notify.slack_bot import DEFAULT_API_URL, SlackBotNotifier
from canary.notify.teams import TeamsNotifier
from canary.specs import NotificationSpec

HEAD = """\
apiVersion: canary/v1
kind: Rollout
metadata:
  name: checkout
spec:
  service: checkout
  version: "2.0.0"
  router: {type: "null"}
  notifications:
"""
ENTRY_LINE = 10
TEAMS = """\
    - type: teams
      webhookUrl: https://example.invalid/workflows/1/triggers/manual/paths/invoke?sig=x
"""
PAGERDUTY = """\
    - type: pagerduty
      routingKeyEnv: PD_ROUTING_KEY
"""


def test_teams_and_pagerduty_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = parse_rollout_text(HEAD + TEAMS + PAGERDUTY, file="r.yaml")
    teams, pd = spec.notifications
    assert (teams.type, teams.events, teams.routing_key_env) == ("teams", (), None)
    assert (pd.type, pd.url, pd.routing_key_env, pd.api_url) == (
        "pagerduty", "", "PD_ROUTING_KEY", "")
    # PagerDuty hears every event, stage progress included: progress resolves
    assert set(pd.events) == set(KNOWN_EVENTS)

    monkeypatch.setenv("PD_ROUTING_KEY", "k" * 32)
    built_teams, built_pd = (build_notifier(n) for n in spec.notifications)
    assert isinstance(built_teams, EventFilter) and isinstance(built_teams.notifier,
                                                               TeamsNotifier)
    assert "stage" not in built_teams.events
    assert isinstance(built_pd, EventFilter) and isinstance(built_pd.notifier,
                                                            PagerDutyNotifier)
    assert "stage" in built_pd.events
    assert DEFAULT_EVENTS_URL.split("/v2")[0] in repr(built_pd.notifier)
    assert "k" * 32 not in repr(built_pd)


def test_pagerduty_api_url_and_events_can_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    text = HEAD + PAGERDUTY + "      apiUrl: https://events.eu.pagerduty.com/v2/enqueue\n" \
        + "      events: [rolled-back, promoted]\n"
    [pd] = parse_rollout_text(text, file="r.yaml").notifications
    assert (pd.api_url, pd.events) == ("https://events.eu.pagerduty.com/v2/enqueue",
                                       ("rolled-back", "promoted"))
    monkeypatch.setenv("PD_ROUTING_KEY", "k" * 32)
    assert "events.eu.pagerduty.com" in repr(build_notifier(pd))


def test_slack_bot_still_defaults_to_slack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANARY_TEST_ENTRIES_BOT", "xoxb-entries")
    built = build_notifier(NotificationSpec("slack", "", bot_token_env="CANARY_TEST_ENTRIES_BOT",
                                            channel="#c"))
    assert isinstance(built, EventFilter) and isinstance(built.notifier, SlackBotNotifier)
    assert DEFAULT_API_URL.split("/api")[0].removeprefix("https://") in repr(built.notifier)


@pytest.mark.parametrize(("entry", "field", "words"), [
    ("    - type: teams\n", "spec.notifications[0]", "a teams notification needs webhookUrl"),
    (TEAMS + "      botTokenEnv: SLACK_TOKEN\n", "spec.notifications[0]",
     "botTokenEnv do(es) not apply to a teams notification"),
    (TEAMS + "      secretEnv: SIGNING\n", "spec.notifications[0]",
     "secretEnv do(es) not apply to a teams notification"),
    ("    - type: pagerduty\n", "spec.notifications[0]",
     "a pagerduty notification needs routingKeyEnv"),
    (PAGERDUTY + "      webhookUrl: https://example.invalid/x\n", "spec.notifications[0]",
     "webhookUrl do(es) not apply to a pagerduty notification"),
    (PAGERDUTY + "      channel: '#ops'\n", "spec.notifications[0]",
     "channel do(es) not apply"),
    ("    - type: slack\n      webhookUrl: https://example.invalid/x\n"
     "      routingKeyEnv: PD\n", "spec.notifications[0]",
     "routingKeyEnv is for type pagerduty"),
    (PAGERDUTY.replace("PD_ROUTING_KEY", "'not a name'"),
     "spec.notifications[0].routingKeyEnv", "should match pattern"),
    (PAGERDUTY + "      templates: {promoted: '{{ version }} live'}\n", "spec.notifications[0]",
     "PagerDuty resolves on promoted: a resolve has no summary"),
    ("    - type: msteams\n      webhookUrl: https://example.invalid/x\n",
     "spec.notifications[0].type", "expected 'slack', 'webhook', 'teams' or 'pagerduty'"),
])
def test_entry_errors_name_file_line_and_field(entry: str, field: str, words: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_rollout_text(HEAD + entry, file="r.yaml")
    err = caught.value
    assert (err.file, err.field) == ("r.yaml", field)
    assert err.line is not None and ENTRY_LINE <= err.line <= ENTRY_LINE + 2
    assert words in err.message


def test_missing_routing_key_variable_refuses_the_deploy(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.delenv("PD_ROUTING_KEY", raising=False)
    [pd] = parse_rollout_text(HEAD + PAGERDUTY, file="r.yaml").notifications
    with pytest.raises(InputError, match="PD_ROUTING_KEY"):
        build_notifier(pd)


def test_registry_refuses_a_bad_template_even_without_the_file() -> None:
    spec = NotificationSpec("teams", "https://example.invalid/w", templates={"held": "{{ x }}"})
    with pytest.raises(InputError) as caught:
        build_notifier(spec)
    assert caught.value.field == "notifications.templates.held"
    assert "unknown field 'x'" in caught.value.message
