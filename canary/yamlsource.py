"""YAML with positions: every value's line is kept so errors can say file:line, field.

Also ``${VAR}`` / ``${VAR:-default}`` interpolation from the environment, applied to string
values after parsing (a value can never change the document's structure). A missing
variable is an input error that names it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from canary.errors import InputError

Path = tuple[str | int, ...]
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class Document:
    data: Any
    file: str
    text: str
    lines: Mapping[Path, int] = field(default_factory=dict)

    def line_of(self, path: Path) -> int | None:
        """Line of the deepest known prefix of ``path`` (1-based)."""
        for n in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:n]))
            if line is not None:
                return line
        return None

    def error(self, message: str, path: Path) -> InputError:
        return InputError(message, file=self.file, line=self.line_of(path),
                          field=dotted(path) or None)


def dotted(path: Path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def load_text(text: str, *, file: str) -> Document:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"invalid YAML: {problem}", file=file,
                         line=mark.line + 1 if mark else None) from exc
    if node is None:
        raise InputError("the file is empty", file=file)
    lines: dict[Path, int] = {}
    data = _build(node, (), lines, file)
    return Document(data=data, file=file, text=text, lines=lines)


def load_file(path: str) -> Document:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise InputError(f"cannot read the file: {exc.strerror}", file=path) from exc
    return load_text(text, file=path)


def _build(node: yaml.Node, path: Path, lines: dict[Path, int], file: str) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise InputError("keys must be plain strings", file=file,
                                 line=key_node.start_mark.line + 1, field=dotted(path) or None)
            key = str(key_node.value)
            if key in out:
                raise InputError(f"duplicate key {key!r}", file=file,
                                 line=key_node.start_mark.line + 1, field=dotted((*path, key)))
            out[key] = _build(value_node, (*path, key), lines, file)
            lines[(*path, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(v, (*path, i), lines, file) for i, v in enumerate(node.value)]
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def interpolate(doc: Document, env: Mapping[str, str] | None = None) -> Document:
    """Replace ${VAR} and ${VAR:-default} in every string value."""
    environ = os.environ if env is None else env

    def walk(value: Any, path: Path) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*path, i)) for i, v in enumerate(value)]
        if isinstance(value, str) and "${" in value:
            def sub(m: re.Match[str]) -> str:
                name, default = m.group(1), m.group(2)
                if name in environ:
                    return environ[name]
                if default is not None:
                    return default
                raise doc.error(f"environment variable {name} is not set (write "
                                f"${{{name}:-default}} to give a default)", path)
            return _VAR.sub(sub, value)
        return value

    return Document(data=walk(doc.data, ()), file=doc.file, text=doc.text, lines=doc.lines)
