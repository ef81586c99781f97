"""Message templates per event: what a team wants to read, in a language too small to hurt.

A rollout file's notification entry may carry ``templates: {rolled-back: "...", ...}``;
the rendered text replaces the notifier's default summary. The language is three things:

* ``{{ field }}`` and ``{{ field | default("text") }}`` (the default when empty);
* ``{% for m in metrics %} ... {{ m.value }} ... {% endfor %}`` over the failing metrics;
* everything else is literal text.

Why not Jinja2's sandbox: it still evaluates expressions (``{{ "x" * 10**9 }}`` is a
gigabyte), offers calls, arithmetic and attribute lookups that a sandbox has to chase, and
its undeclared-variable check stops at top-level names. Here there is nothing to
evaluate: a template is parsed once, at ``canary validate``, every name is checked against
:data:`FIELDS`/:data:`METRIC_FIELDS`, and rendering only looks values up in a dict, so the
output is bounded by the template's length plus the (capped) values it names. ``${VAR}`` is
left to the rollout file's environment expansion, which runs first.

Values are redacted with :mod:`canary.secrets` before they are placed, and the
whole text once more after, so a webhook URL that ended up in a reason never reaches a
channel.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeAlias

from canary.model import MetricResult, Notification, Outcome
from canary.secrets import redact_known

# The events a notification can be about (slack.EVENTS gives each its emoji and wording).
EVENT_NAMES: tuple[str, ...] = (
    "aborted", "gate-failed", "held", "needs-human", "promoted", "rolled-back", "stage")

FIELDS: dict[str, str] = {
    "event": "the event name, e.g. rolled-back",
    "rollout": "the rollout's name (metadata.name)",
    "service": "the service",
    "version": "the canary version",
    "stableVersion": "the stable version (empty when unknown)",
    "stage": "the 1-based stage reached (0 before any traffic)",
    "weight": "the canary's traffic percentage",
    "reason": "why it happened (empty for a plain promotion)",
    "failing": "how many metrics failed or could not be measured",
    "metrics": "the failing metrics: loop with {% for m in metrics %}",
}
METRIC_FIELDS: dict[str, str] = {
    "name": "the metric's name",
    "outcome": "failed or error",
    "value": "the observed value ('no value' when none)",
    "threshold": "the threshold, e.g. <= 0.01",
    "query": "the PromQL that produced the value",
    "message": "what went wrong measuring it, if anything",
    "url": "the query graphed in Prometheus, if known",
}
LISTS = frozenset({"metrics"})

MAX_SOURCE = 4000  # characters of template text
MAX_VALUE = 1000  # characters one placed value may take
MAX_OUTPUT = 4000  # characters of rendered text; each channel cuts further to its own limit

_TAG = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.DOTALL)
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_EXPR = re.compile(rf"^\s*({_NAME})(?:\.({_NAME}))?\s*(?:\|\s*(.*?)\s*)?$", re.DOTALL)
_FILTER = re.compile(rf"^({_NAME})\s*(?:\((.*)\))?$", re.DOTALL)
_STRING = re.compile(r'^\s*(?:"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\')\s*$', re.DOTALL)
_FOR = re.compile(rf"^\s*for\s+({_NAME})\s+in\s+({_NAME})\s*$")


class TemplateError(ValueError):
    """A template that cannot be used: what is wrong, and where in the template."""

    def __init__(self, message: str, *, line: int, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column

    def __str__(self) -> str:
        return f"{self.message} (template line {self.line}, column {self.column})"


@dataclass(frozen=True)
class _Var:
    name: str
    attr: str | None
    default: str | None


@dataclass(frozen=True)
class _Loop:
    var: str
    body: tuple[_Node, ...]


_Node: TypeAlias = "str | _Var | _Loop"


@dataclass(frozen=True)
class Template:
    source: str
    nodes: tuple[_Node, ...]

    def render(self, context: Mapping[str, object], *,
               escape: Callable[[str], str] = lambda s: s) -> str:
        """The text, with every placed value redacted, then escaped for the channel."""
        out: list[str] = []
        size = [0]

        def put(text: str) -> bool:
            if size[0] >= MAX_OUTPUT:
                return False
            out.append(text)
            size[0] += len(text)
            return True

        def value(v: object) -> str:
            return escape(redact_known(str(v)[:MAX_VALUE]))

        def walk(nodes: tuple[_Node, ...], scope: Mapping[str, object]) -> bool:
            for node in nodes:
                if isinstance(node, str):
                    ok = put(node)
                elif isinstance(node, _Var):
                    got = scope.get(node.name, "")
                    if node.attr is not None:
                        got = got.get(node.attr, "") if isinstance(got, Mapping) else ""
                    text = "" if got is None else str(got)
                    if not text and node.default is not None:
                        ok = put(node.default)  # the author's own text: not escaped
                    else:
                        ok = put(value(text))
                else:
                    items = scope.get("metrics", ())
                    ok = True
                    for item in items if isinstance(items, (list, tuple)) else ():
                        if not (ok := walk(node.body, {**scope, node.var: item})):
                            break
                if not ok:
                    return False
            return True

        walk(self.nodes, context)
        return redact_known("".join(out))[:MAX_OUTPUT]


def _position(source: str, offset: int) -> tuple[int, int]:
    line = source.count("\n", 0, offset) + 1
    return line, offset - (source.rfind("\n", 0, offset) + 1) + 1


def parse(source: str) -> Template:
    """The template, or TemplateError naming the first problem and where it is."""
    if len(source) > MAX_SOURCE:
        raise TemplateError(f"template is {len(source)} characters; at most {MAX_SOURCE}",
                            line=1, column=1)
    stack: list[tuple[str, list[_Node], int]] = [("", [], 0)]  # (loop var, nodes, offset)
    pos = 0
    for m in _TAG.finditer(source):
        stack[-1][1].append(source[pos:m.start()])
        pos = m.end()
        line, column = _position(source, m.start())

        def fail(message: str, line: int = line, column: int = column) -> TemplateError:
            return TemplateError(message, line=line, column=column)

        if m.group(1) is not None:
            loop_vars = {var for var, _, _ in stack if var}
            stack[-1][1].append(_expression(m.group(1), loop_vars, fail))
            continue
        tag = m.group(2).strip()
        loop = _FOR.match(tag)
        if loop:
            var, seq = loop.groups()
            if len(stack) > 1:
                raise fail("loops do not nest")
            if seq not in LISTS:
                raise fail(f"cannot loop over {seq!r}; loop over: {', '.join(sorted(LISTS))}")
            if var in FIELDS:
                raise fail(f"loop variable {var!r} hides the field of that name")
            stack.append((var, [], m.start()))
        elif tag == "endfor":
            if len(stack) == 1:
                raise fail("endfor without a for")
            var, body, _ = stack.pop()
            stack[-1][1].append(_Loop(var, tuple(n for n in body if n != "")))
        else:
            word = tag.split()[0] if tag else ""
            raise fail(f"unknown tag {word!r}: only 'for ... in metrics' and 'endfor'")
    rest = source[pos:]
    for opener in ("{{", "{%"):
        if opener in rest:
            line, column = _position(source, pos + rest.index(opener))
            raise TemplateError(f"{opener!r} is not closed", line=line, column=column)
    if len(stack) > 1:
        line, column = _position(source, stack[-1][2])
        raise TemplateError("for without endfor", line=line, column=column)
    stack[0][1].append(rest)
    return Template(source, tuple(n for n in stack[0][1] if n != ""))


def _expression(text: str, loop_vars: set[str],
                fail: Callable[[str], TemplateError]) -> _Var:
    m = _EXPR.match(text)
    if not m:
        raise fail(f"cannot read {{{{{text}}}}}: write {{{{ field }}}} or "
                   "{{ field | default(\"text\") }}")
    name, attr, filt = m.groups()
    if name in loop_vars:
        if attr is None:
            raise fail(f"{name!r} is a metric: write {name}.name, {name}.value, ...")
        if attr not in METRIC_FIELDS:
            raise fail(f"unknown metric field {attr!r}; known: {', '.join(METRIC_FIELDS)}")
    elif name not in FIELDS:
        raise fail(f"unknown field {name!r}; known fields: {', '.join(FIELDS)}")
    elif attr is not None:
        raise fail(f"no attribute access: {name}.{attr} (only a loop variable has fields)")
    elif name in LISTS:
        raise fail(f"{name!r} is a list: loop over it with {{% for m in {name} %}}")
    default = None
    if filt is not None:
        f = _FILTER.match(filt)
        if not f or f.group(1) != "default":
            raise fail(f"unknown filter {filt.split('(')[0].strip()!r}: the only filter is "
                       "default(\"text\")")
        arg = _STRING.match(f.group(2) or "")
        if not arg:
            raise fail('default takes one quoted string: default("text")')
        raw = arg.group(1) if arg.group(1) is not None else arg.group(2)
        default = re.sub(r"\\(.)", r"\1", raw)
    return _Var(name, attr, default)


def format_value(value: float | None) -> str:
    if value is None:
        return "no value"
    if math.isnan(value):
        return "NaN"
    return f"{value:.6g}"


def failing(results: tuple[MetricResult, ...]) -> list[MetricResult]:
    """The results that explain a failure: failed or unmeasurable, and deciding (a
    dry-run metric never decides, so listing it would point at the wrong cause)."""
    bad = (Outcome.FAILED, Outcome.ERROR)
    return [r for r in results if r.outcome in bad and not r.dry_run]


def context(n: Notification) -> dict[str, object]:
    """What a template can name, for one notification."""
    bad = failing(n.results)
    return {
        "event": n.event, "rollout": n.rollout, "service": n.service, "version": n.version,
        "stableVersion": n.stable_version or "", "stage": n.stage, "weight": n.weight,
        "reason": n.reason, "failing": len(bad),
        "metrics": [{"name": r.name, "outcome": r.outcome.value,
                     "value": format_value(r.value), "threshold": r.threshold,
                     "query": r.query, "message": r.message, "url": r.link} for r in bad],
    }


@dataclass(frozen=True)
class Templates:
    """The templates of one notification entry, by event; most entries have none."""

    by_event: Mapping[str, Template]

    def render(self, n: Notification, *, escape: Callable[[str], str] = lambda s: s
               ) -> str | None:
        """The rendered text for this notification's event, or None (use the default).
        Trailing whitespace is dropped: a YAML ``|`` block always ends in a newline."""
        template = self.by_event.get(n.event)
        if template is None:
            return None
        return template.render(context(n), escape=escape).rstrip()


NO_TEMPLATES = Templates({})


class TemplatesError(ValueError):
    """Which entry of ``templates`` is wrong (the event name), why, and on which line of
    the template (None when the template as a whole is wrong)."""

    def __init__(self, event: str, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.event = event
        self.message = message
        self.line = line


def compile_templates(raw: Mapping[str, str]) -> Templates:
    """Every template parsed; TemplatesError for an unknown event or a bad template."""
    out: dict[str, Template] = {}
    for event, source in raw.items():
        if event not in EVENT_NAMES:
            raise TemplatesError(event, f"unknown event {event!r}; known events: "
                                        f"{', '.join(EVENT_NAMES)}")
        try:
            out[event] = parse(source)
        except TemplateError as exc:
            raise TemplatesError(event, str(exc), line=exc.line) from None
    return Templates(out)
