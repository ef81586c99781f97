"""Notification templates as the YAML edge sees them: a template's problem reported with
the rollout file's line (the template's own line counted from where its text starts) and
the field path, like every other refusal of `canary validate`."""

from __future__ import annotations

import re
from collections.abc import Mapping

from canary.config.yamlsource import Document, Path, dotted
from canary.errors import InputError
from canary.notify.templates import TemplatesError, compile_templates

_BLOCK = re.compile(r":\s+[|>][-+0-9]*\s*(#.*)?$")


def check_templates(doc: Document, path: Path, raw: Mapping[str, str]) -> None:
    """For ``canary validate``: InputError naming the file, the line of the problem (the
    template's own line counted from where its text starts) and the field path."""
    try:
        compile_templates(raw)
    except TemplatesError as exc:
        where = (*path, exc.event)
        line = doc.line_of(where)
        if line is not None and exc.line is not None:
            lines = doc.text.splitlines()
            key_line = lines[line - 1] if 0 < line <= len(lines) else ""
            # `rolled-back: |` starts the text on the next line; a quoted one on this line
            line += (1 if _BLOCK.search(key_line) else 0) + exc.line - 1
        raise InputError(exc.message, file=doc.file, line=line, field=dotted(where)) from None
