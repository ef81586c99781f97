"""YAML with positions, and the one guarded door every document comes in by.

Every rollout and policy document (a CLI file, an API body, the document a store keeps and
re-reads on resume) is read here, so the limits below hold for all of them. They are
checked while the YAML is *composed*, before any Python value is built: an alias bomb, a
recursive alias or a 10,000-level nesting is refused after a few thousand events, in
bounded memory, with the line it starts on. Only plain YAML is accepted: strings,
numbers, booleans, null, lists and mappings; any other tag is refused with its line.

Every value's line is kept so errors can say file:line, field. ``${VAR}`` /
``${VAR:-default}`` interpolation from the environment is applied to string values after
parsing (a value can never change the document's structure); a missing variable is an
input error that names it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.composer import ComposerError

from canary.errors import InputError

Path = tuple[str | int, ...]
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# A rollout or policy file is a few kilobytes; 256 KiB leaves room for long hook lists
# while keeping the pure-Python parser well under a second on any input.
MAX_DOCUMENT_BYTES = 256 * 1024
# Deepest nesting of lists and mappings, aliases expanded. Our formats need 6; PyYAML's
# recursive composer would hit Python's recursion limit near 490.
MAX_DEPTH = 64
# Values in the document with every alias expanded (what building it would create): the
# bound that makes a "billion laughs" alias bomb fail fast instead of eating memory.
MAX_NODES = 20_000
# Aliases a document may use; a few are handy (a shared hook), thousands are an attack.
MAX_ALIASES = 200

_YAML = "tag:yaml.org,2002:"
_TEXT_TAGS = {_YAML + "str", _YAML + "timestamp"}  # dates stay text: `version: 2024-01-02`
_BUILT_TAGS = {_YAML + "int", _YAML + "float", _YAML + "bool", _YAML + "null"}
# C0 and C1 control characters except tab, newline and carriage return: no name, version,
# command or URL needs them, and a NUL reaching exec() or a label would crash later.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


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
        p = p if isinstance(p, int) else _printable(p)
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _printable(text: str) -> str:
    """A key or value as it can be shown on a terminal (control characters escaped)."""
    if len(text) > 80:
        text = text[:80] + "..."
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def control_character(text: str) -> str | None:
    """A description of the first control character in ``text``, or None."""
    m = _CONTROL.search(text)
    return None if m is None else f"control character U+{ord(m.group()):04X}"


class _Refused(ComposerError):
    """A document over one of the limits, raised while composing (before building)."""


class _GuardedLoader(yaml.SafeLoader):
    """SafeLoader whose composer counts depth, aliases and expanded size as it goes."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0
        # id(node) -> values and nesting it expands to; a node is in here once composed,
        # so an alias to an anchored node not in here points into itself.
        self._size: dict[int, int] = {}
        self._height: dict[int, int] = {}

    def fetch_flow_collection_start(self, token_class: type[yaml.Token]) -> None:
        # The scanner holds tokens back while a flow collection could still be a key, and
        # rescans every open level per character: refuse deep ``[[[[`` before that bites.
        super().fetch_flow_collection_start(token_class)
        if self.flow_level > MAX_DEPTH:
            raise _Refused(None, None, f"nested more than {MAX_DEPTH} levels deep",
                           self.get_mark())

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        mark: Any = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Refused(None, None, f"more than {MAX_ALIASES} aliases",
                               mark)
            target = self.anchors.get(event.anchor or "")
            if target is not None and id(target) not in self._size:
                raise _Refused(None, None, f"alias *{event.anchor} refers to the value "
                               "that contains it (a recursive alias)", mark)
            node = super().compose_node(parent, index)
        else:
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise _Refused(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
            node = super().compose_node(parent, index)
            self._depth -= 1
        if node is not None:
            self._account(node, mark)
        return node

    def _account(self, node: yaml.Node, mark: Any) -> None:
        key = id(node)
        if key not in self._size:
            children: list[yaml.Node] = []
            if isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            elif isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            self._size[key] = 1 + sum(self._size.get(id(c), 1) for c in children)
            self._height[key] = 1 + max((self._height.get(id(c), 1) for c in children),
                                        default=0)
        if self._size[key] > MAX_NODES:
            raise _Refused(None, None, f"expands to more than {MAX_NODES} values (aliases "
                           "included)", mark)
        if self._depth + self._height[key] > MAX_DEPTH + 1:
            raise _Refused(None, None, f"nested more than {MAX_DEPTH} levels deep (aliases "
                           "included)", mark)


def read_text(path: str) -> str:
    """A document file's text: at most MAX_DOCUMENT_BYTES, UTF-8 only."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise InputError(f"cannot read the file: {exc.strerror}", file=path) from exc
    except ValueError as exc:  # an embedded NUL in the path
        raise InputError(f"cannot read the file: {exc}", file=_printable(path)) from exc
    return decode(data, file=path)


def decode(data: bytes, *, file: str) -> str:
    """Bytes of a document as text, refusing what is too big or not UTF-8."""
    _check_size(len(data), file)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InputError(f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot be decoded "
                         "(save the file as UTF-8)", file=file, line=line) from None


def _check_size(size: int, file: str) -> None:
    if size > MAX_DOCUMENT_BYTES:
        raise InputError(f"the document is larger than {MAX_DOCUMENT_BYTES // 1024} KiB; a "
                         "rollout or policy file is a few kilobytes", file=file)


def load_text(text: str, *, file: str) -> Document:
    _check_size(len(text.encode("utf-8", "surrogatepass")), file)
    try:
        loader = _GuardedLoader(text)  # its reader refuses unprintable characters here
    except yaml.reader.ReaderError as exc:
        raise InputError(f"invalid YAML: the {_character(exc.character)} cannot appear in a "
                         "YAML file", file=file,
                         line=text[:exc.position].count("\n") + 1) from None
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"invalid YAML: {problem}", file=file,
                         line=mark.line + 1 if mark else None) from None
    finally:
        loader.dispose()
    if node is None:
        raise InputError("the file is empty", file=file)
    lines: dict[Path, int] = {}
    data = _build(node, (), lines, file)
    return Document(data=data, file=file, text=text, lines=lines)


def _character(char: object) -> str:
    code = char if isinstance(char, int) else ord(str(char)[:1] or "\0")
    return f"character U+{code:04X}"


def load_file(path: str) -> Document:
    return load_text(read_text(path), file=path)


def _build(node: yaml.Node, path: Path, lines: dict[Path, int], file: str) -> Any:
    line = node.start_mark.line + 1
    lines[path] = line
    if isinstance(node, yaml.MappingNode):
        _check_tag(node, _YAML + "map", path, file)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise InputError("keys must be plain strings", file=file,
                                 line=key_line, field=dotted(path) or None)
            if key_node.tag not in _TEXT_TAGS | _BUILT_TAGS:
                raise _tag_error(key_node, path, file)
            key = str(key_node.value)
            bad = control_character(key)
            if bad:
                raise InputError(f"a key holds a {bad}", file=file, line=key_line,
                                 field=dotted((*path, key)))
            if key in out:
                raise InputError(f"duplicate key {_printable(key)!r}", file=file,
                                 line=key_line, field=dotted((*path, key)))
            out[key] = _build(value_node, (*path, key), lines, file)
            lines[(*path, key)] = key_line
        return out
    if isinstance(node, yaml.SequenceNode):
        _check_tag(node, _YAML + "seq", path, file)
        return [_build(v, (*path, i), lines, file) for i, v in enumerate(node.value)]
    return _scalar(node, path, file)


def _scalar(node: yaml.Node, path: Path, file: str) -> Any:
    line = node.start_mark.line + 1
    if node.tag in _TEXT_TAGS:
        text = str(node.value)
        bad = control_character(text)
        if bad:
            raise InputError(f"the value holds a {bad}; names, versions, commands and URLs "
                             "are printable text", file=file, line=line,
                             field=dotted(path) or None)
        return text
    if node.tag not in _BUILT_TAGS:
        raise _tag_error(node, path, file)
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    except (ValueError, KeyError, TypeError, OverflowError, yaml.YAMLError):
        kind = str(node.tag).removeprefix(_YAML)
        raise InputError(f"cannot read {_printable(str(node.value))!r} as {kind}", file=file,
                         line=line, field=dotted(path) or None) from None
    finally:
        loader.dispose()


def _check_tag(node: yaml.Node, expected: str, path: Path, file: str) -> None:
    if node.tag != expected:
        raise _tag_error(node, path, file)


def _tag_error(node: yaml.Node, path: Path, file: str) -> InputError:
    tag = str(node.tag).replace(_YAML, "!!")
    return InputError(f"the tag {_printable(tag)} is not supported: only plain YAML "
                      "(text, numbers, true/false, null, lists and mappings)", file=file,
                      line=node.start_mark.line + 1, field=dotted(path) or None)


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
            out = _VAR.sub(sub, value)
            bad = control_character(out)
            if bad:
                raise doc.error(f"an environment variable put a {bad} into the value", path)
            return out
        return value

    return Document(data=walk(doc.data, ()), file=doc.file, text=doc.text, lines=doc.lines)
