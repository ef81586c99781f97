"""What a rollout document posted to `canary serve` may do before it is parsed for real.

Two things a file on the operator's own disk may do but a document from the network may
not. It may not expand the controller's environment, except the variables the operator
allowed (``canary serve --allow-env 'DEPLOY_*'``): otherwise ``service: "${SECRET}"`` would
echo the controller's secrets back to whoever can read the rollout. The API tokens are
never expandable, whatever the patterns say. And it may not make the parser do unbounded
work: YAML aliases expand to shared subtrees, so 350 bytes of nested aliases become
millions of nodes; the expanded size is counted on the composed graph, which stays small,
before anything walks it.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from canary.config.yamlsource import Document, load_text
from canary.errors import InputError

MAX_NODES = 20_000
NEVER = "CANARY_API_TOKENS_*"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")


@dataclass(frozen=True)
class EnvPolicy:
    """Glob patterns of the variables a posted document may expand (none by default)."""

    allowed: tuple[str, ...] = ()

    def allows(self, name: str) -> bool:
        if fnmatch.fnmatchcase(name, NEVER):
            return False
        return any(fnmatch.fnmatchcase(name, p) for p in self.allowed)

    @classmethod
    def of(cls, patterns: Sequence[str]) -> EnvPolicy:
        return cls(tuple(p for p in patterns if p))


def check_document(text: str, *, file: str, env: EnvPolicy) -> Document:
    """The parsed document, or InputError naming file, line and field of what is refused."""
    _bounded(text, file=file)
    try:
        doc = load_text(text, file=file)
    except InputError:
        raise
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        # The YAML parses but a value cannot be built (a date like 2024-13-45...).
        raise InputError(f"invalid YAML: {exc}", file=file) from None
    _check_env(doc, doc.data, (), env)
    return doc


def _bounded(text: str, *, file: str) -> None:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return  # load_text reports it with its line
    except RecursionError:
        raise InputError("invalid YAML: nested too deeply", file=file) from None
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, depth: int) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if depth > 200:
            raise InputError("invalid YAML: nested too deeply", file=file,
                             line=node.start_mark.line + 1)
        total = 1
        if isinstance(node, yaml.MappingNode):
            total += sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(v, depth + 1) for v in node.value)
        if total > MAX_NODES:
            raise InputError(f"the document expands to more than {MAX_NODES} values "
                             "(YAML aliases?)", file=file, line=node.start_mark.line + 1)
        sizes[id(node)] = total
        return total

    if root is not None:
        size(root, 0)


def _check_env(doc: Document, value: Any, path: tuple[str | int, ...], env: EnvPolicy) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _check_env(doc, v, (*path, k), env)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_env(doc, v, (*path, i), env)
    elif isinstance(value, str) and "${" in value:
        for match in _VAR.finditer(value):
            name = match.group(1)
            if not env.allows(name):
                allowed = ", ".join(env.allowed) or "none"
                raise doc.error(f"environment variable {name} may not be expanded in a "
                                f"document posted to canary serve (allowed: {allowed}; "
                                "see --allow-env)", path)
