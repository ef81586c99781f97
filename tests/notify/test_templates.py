"""Message templates: what they render per event, what they refuse (and where
``canary validate`` says so), and what they can never do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from canary.cli import app
from canary.config.spec import parse_rollout_text
from canary.errors import InputError
from canary.model import MetricResult, Outcome
from canary.notify.slack import EVENTS, SlackNotifier, slack_message
from canary.notify.templates import (
    EVENT_NAMES,
    MAX_OUTPUT,
    MAX_SOURCE,
    TemplateError,
    TemplatesError,
    compile_templates,
    parse,
)
from canary.notify.webhook import WebhookNotifier
from canary.secrets import register_url
from lab.slack_receiver import SlackReceiver

from .samples import SECRET_PATH, SECRET_TOKEN, rollback

EVERY_FIELD = ("{{ event }}|{{ rollout }}|{{ service }}|{{ version }}|{{ stableVersion }}|"
               "{{ stage }}|{{ weight }}|{{ reason }}|{{ failing }}")


def test_event_names_are_the_slack_events() -> None:
    assert set(EVENT_NAMES) == set(EVENTS)


@pytest.mark.parametrize("event", EVENT_NAMES)
def test_each_event_renders_its_own_template(event: str) -> None:
    templates = compile_templates({e: f"<{e}> " + EVERY_FIELD for e in EVENT_NAMES})
    text = templates.render(rollback(event=event))
    assert text == (f"<{event}> {event}|checkout|checkout-svc|2.0.0|1.4.2|2|25|"
                    "analysis failed: error-rate, latency-p99|2")


def test_no_template_for_the_event_means_the_default() -> None:
    templates = compile_templates({"promoted": "yay {{ version }}"})
    assert templates.render(rollback()) is None
    assert templates.render(rollback(event="promoted")) == "yay 2.0.0"


def test_default_applies_to_empty_values_only() -> None:
    t = parse('{{ stableVersion | default("first deploy") }} / {{ reason | default(\'-\') }}')
    n = rollback(stable_version=None, reason="")
    assert t.render({"stableVersion": "", "reason": ""}) == "first deploy / -"
    assert compile_templates({"rolled-back": t.source}).render(n) == "first deploy / -"
    assert compile_templates({"rolled-back": t.source}).render(rollback()) == (
        "1.4.2 / analysis failed: error-rate, latency-p99")


def test_loop_over_the_failing_deciding_metrics() -> None:
    templates = compile_templates({"rolled-back": (
        "{{ failing }} failing:\n"
        "{% for m in metrics %}- {{ m.name }} ({{ m.outcome }}) = {{ m.value }}, "
        "want {{ m.threshold }} [{{ m.url | default(\"no graph\") }}] {{ m.message }}\n"
        "  {{ m.query }}\n{% endfor %}")})
    text = templates.render(rollback())
    assert text == (
        "2 failing:\n"
        "- error-rate (failed) = 0.0523, want <= 0.01 [no graph] \n"
        '  sum(rate(http_requests_total{service="checkout-svc",code=~"5.."}[1m]))\n'
        "- latency-p99 (error) = no value, want <= 0.5 [no graph] Prometheus unreachable\n"
        "  histogram_quantile(0.99, sum by (le) (rate(x_bucket[1m])))")
    # the passing metric and the dry-run one are not "failing"
    assert "queue-depth" not in text and "cpu" not in text


@pytest.mark.parametrize(("source", "words", "line", "column"), [
    ("{{ stabel }}", "unknown field 'stabel'; known fields: event, rollout", 1, 1),
    ("ok\n  {{ rollout.name }}", "no attribute access: rollout.name", 2, 3),
    ("{{ rollout.__class__ }}", "no attribute access", 1, 1),
    ("{{ __import__ }}", "unknown field '__import__'", 1, 1),
    ("{{ metrics }}", "'metrics' is a list", 1, 1),
    ("{{ 7 * 7 }}", "cannot read", 1, 1),
    ("{{ rollout() }}", "cannot read", 1, 1),
    ("{{ rollout | upper }}", "unknown filter 'upper'", 1, 1),
    ("{{ rollout | default(reason) }}", "default takes one quoted string", 1, 1),
    ("{% if reason %}x{% endif %}", "unknown tag 'if'", 1, 1),
    ("{% for m in metrics %}{{ m.nme }}{% endfor %}", "unknown metric field 'nme'", 1, 23),
    ("{% for m in metrics %}{{ m }}{% endfor %}", "'m' is a metric", 1, 23),
    ("{% for m in rollout %}{% endfor %}", "cannot loop over 'rollout'", 1, 1),
    ("{% for m in metrics %}{% for n in metrics %}{% endfor %}{% endfor %}",
     "loops do not nest", 1, 23),
    ("{% for reason in metrics %}{% endfor %}", "hides the field", 1, 1),
    ("a\nb\n{% for m in metrics %}", "for without endfor", 3, 1),
    ("{% endfor %}", "endfor without a for", 1, 1),
    ("x {{ rollout", "'{{' is not closed", 1, 3),
    ("{{ m.name }}", "unknown field 'm'", 1, 1),
])
def test_refused_templates_say_what_and_where(source: str, words: str, line: int,
                                              column: int) -> None:
    with pytest.raises(TemplateError) as caught:
        parse(source)
    assert words in caught.value.message
    assert (caught.value.line, caught.value.column) == (line, column)


def test_unknown_event_name_is_refused() -> None:
    with pytest.raises(TemplatesError) as caught:
        compile_templates({"rolledback": "x"})
    assert caught.value.event == "rolledback"
    assert "unknown event 'rolledback'; known events: aborted, gate-failed" in str(caught.value)


def test_output_is_bounded() -> None:
    with pytest.raises(TemplateError, match=f"at most {MAX_SOURCE}"):
        parse("x" * (MAX_SOURCE + 1))
    many = tuple(MetricResult(f"m{i}", Outcome.FAILED, 1.0, "q" * 5000) for i in range(2000))
    source = ("{% for m in metrics %}{{ m.query }}{{ m.query }}{{ m.query }}{% endfor %}"
              * 10)
    text = compile_templates({"rolled-back": source}).render(rollback(results=many))
    assert text is not None and len(text) == MAX_OUTPUT


def test_secrets_stay_masked_in_rendered_text() -> None:
    url = "https://hooks.example.com" + SECRET_PATH
    register_url(url)
    n = rollback(reason=f"hook {url} answered 500")
    text = compile_templates({"rolled-back": "{{ reason }}"}).render(n)
    assert text is not None and SECRET_TOKEN not in text and "***" in text
    # a secret typed into the template itself is masked as well
    literal = compile_templates({"rolled-back": f"see {url}"}).render(n)
    assert literal is not None and SECRET_TOKEN not in literal


def test_slack_text_and_section_come_from_the_template(receiver: SlackReceiver,
                                                       secret_url: str) -> None:
    templates = compile_templates({"rolled-back": "*{{ rollout }}* back on {{ stableVersion }}"
                                                  " <https://runbook.example|runbook>:"
                                                  " {{ reason }}"})
    SlackNotifier(secret_url, templates=templates).send(
        rollback(reason="<!channel> a & b"))
    [payload] = receiver.payloads
    expected = ("*checkout* back on 1.4.2 <https://runbook.example|runbook>: "
                "&lt;!channel&gt; a &amp; b")  # the author's mrkdwn kept, values escaped
    assert payload["text"] == expected
    assert [b["type"] for b in payload["blocks"]] == ["header", "section", "context"]
    assert payload["blocks"][1]["text"]["text"] == expected
    # without a template for the event: the default message, unchanged
    default = slack_message(rollback(event="promoted"), templates=templates)
    assert default == slack_message(rollback(event="promoted"))


def test_webhook_json_gains_the_rendered_text(receiver: SlackReceiver) -> None:
    templates = compile_templates({"rolled-back": "{{ rollout }} down to {{ weight }}%"})
    notifier = WebhookNotifier(receiver.url("/hook"), templates=templates)
    notifier.send(rollback())
    notifier.send(rollback(event="held"))
    rolled, held = receiver.payloads
    assert rolled["text"] == "checkout down to 25%"
    assert "text" not in held


# -- canary validate -----------------------------------------------------------------------

ROLLOUT = """\
apiVersion: canary/v1
kind: Rollout
metadata:
  name: checkout
spec:
  service: checkout
  version: "2.0.0"
  router:
    type: haproxy
    socket: /run/haproxy/admin.sock
    backend: checkout
    stable: [stable-1]
    canary: canary-1
  notifications:
    - type: webhook
      webhookUrl: http://127.0.0.1:1/hook
    - type: teams
      webhookUrl: https://example.invalid/workflows/x/triggers/manual/paths/invoke?sig=s
      templates:
        promoted: "{{ version }} is live"
        rolled-back: |
          {{ rollout }} rolled back at {{ weight }}%
          {% for m in metrics %}- {{ m.name }}: {{ m.value }}
          {% endfor %}
"""
TEMPLATES_LINE = 19  # the line of "templates:" above


def validate(tmp_path: Path, text: str) -> tuple[int, str]:
    path = tmp_path / "rollout.yaml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["validate", str(path)])
    return result.exit_code, result.output.replace(str(path), "rollout.yaml")


def test_valid_templates_pass_validate(tmp_path: Path) -> None:
    code, output = validate(tmp_path, ROLLOUT)
    assert code == 0, output
    spec = parse_rollout_text(ROLLOUT, file="rollout.yaml")
    assert spec.notifications[1].templates["promoted"] == "{{ version }} is live"


@pytest.mark.parametrize(("change", "where", "words"), [
    (("{{ version }} is live", "{{ verison }} is live"),
     f"rollout.yaml:{TEMPLATES_LINE + 1}: spec.notifications[1].templates.promoted",
     "unknown field 'verison'"),
    (("- {{ m.name }}: {{ m.value }}", "- {{ m.name }}: {{ m.vaule }}"),
     f"rollout.yaml:{TEMPLATES_LINE + 4}: spec.notifications[1].templates.rolled-back",
     "unknown metric field 'vaule'"),
    (("          {% endfor %}\n", "          {% endfro %}\n"),
     f"rollout.yaml:{TEMPLATES_LINE + 5}: spec.notifications[1].templates.rolled-back",
     "unknown tag 'endfro'"),
    (("        promoted:", "        promote:"),
     f"rollout.yaml:{TEMPLATES_LINE + 1}: spec.notifications[1].templates.promote",
     "unknown event 'promote'"),
    (("        promoted: \"{{ version }} is live\"", "        promoted: \"{{ version \""),
     f"rollout.yaml:{TEMPLATES_LINE + 1}: spec.notifications[1].templates.promoted",
     "'{{' is not closed"),
])
def test_validate_names_file_line_and_field(tmp_path: Path, change: tuple[str, str],
                                            where: str, words: str) -> None:
    assert change[0] in ROLLOUT
    code, output = validate(tmp_path, ROLLOUT.replace(*change))
    assert code == 2
    assert where in output and words in output, output
    assert "Traceback" not in output


def test_parse_error_is_an_input_error_with_position() -> None:
    bad = ROLLOUT.replace("{{ rollout }} rolled back", "{{ rollout.name }} rolled back")
    with pytest.raises(InputError) as caught:
        parse_rollout_text(bad, file="r.yaml")
    err = caught.value
    assert (err.file, err.line, err.field) == ("r.yaml", TEMPLATES_LINE + 3,
                                               "spec.notifications[1].templates.rolled-back")
    assert "template line 1, column 1" in err.message


def test_schema_lists_the_new_types_and_fields() -> None:
    result = CliRunner().invoke(app, ["schema", "rollout"])
    assert result.exit_code == 0
    text = json.dumps(json.loads(result.output))
    for word in ('"teams"', '"pagerduty"', '"routingKeyEnv"', '"templates"'):
        assert word in text
