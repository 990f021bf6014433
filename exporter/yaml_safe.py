"""Reading a YAML document that may be hostile, within bounded time and memory.

A config file is input. PyYAML builds aliases as shared objects, so a ten-line "billion
laughs" file loads at once and then explodes in whatever walks the result; a few
thousand nested brackets overflow its recursive composer. So the document is built here
from libyaml's event stream (the parser keeps its own stack and does not recurse), in one
pass that also measures it: its nesting depth, and how many nodes it holds once every
alias is expanded, counted from each anchor's size without expanding anything. Beyond
the limits, reading stops with an error. Keys written twice in one mapping, which YAML
keeps silently (the last wins), are reported too. Scalars resolve as PyYAML's safe
loader resolves them (YAML 1.1: ``on`` is true, ``010`` is 8), with a fast path for the
plain words that make up most of a config.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

MAX_DEPTH = 64
# Nodes that aliases may add on top of the document's own: generous for anchors shared
# by thousands of probes (``<<: *defaults``), far below what a few lines can request.
MAX_ALIAS_NODES = 200_000
_ALIAS_HARD_LIMIT = 5_000_000

_Parser: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Resolves and constructs the scalars the fast path does not settle.
_SAFE = yaml.SafeLoader("")
_TAG = "tag:yaml.org,2002:"
# A plain scalar starting with none of these is a string under every implicit resolver
# (bool, int, float, null, timestamp, merge, value).
_MAYBE_TYPED = frozenset("yYnNtTfFoO-+0123456789.<~=")
_MERGE = object()


class DocumentError(Exception):
    """The document cannot be read. ``str()`` says where and why, without the content."""


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _scalar(event: Any) -> Any:
    value: str = event.value
    tag = event.tag
    if tag is None or tag == "!":
        if not event.implicit[0] or tag == "!":  # quoted or block: a string
            return value
        if value and value[0] not in _MAYBE_TYPED:
            return value
        tag = _SAFE.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
        if tag == _TAG + "merge":
            return _MERGE
    elif not tag.startswith(_TAG) or tag[len(_TAG):] not in (
        "str", "int", "float", "bool", "null", "timestamp", "binary"
    ):
        raise DocumentError(f"{_where(event.start_mark)}: tag {_short(tag)} is not supported")
    constructor = _SAFE.yaml_constructors[tag]
    try:
        return constructor(_SAFE, yaml.ScalarNode(tag, value, event.start_mark))
    except ValueError as exc:
        # int() refuses numbers of more than 4,300 digits (CVE-2020-10735).
        what = "has too many digits" if "digits" in str(exc) else "cannot be read"
        raise DocumentError(f"{_where(event.start_mark)}: the value {what}") from None
    except yaml.YAMLError as exc:
        raise DocumentError(_yaml_problem(exc)) from None


class _Open:
    """A collection being built."""

    __slots__ = ("anchor", "is_map", "key", "key_mark", "mark", "merges", "size", "value")

    def __init__(self, is_map: bool, anchor: str | None, mark: Any) -> None:
        self.is_map = is_map
        self.anchor = anchor
        self.mark = mark
        self.size = 1
        self.value: Any = {} if is_map else []
        self.key: Any = _NO_KEY
        self.key_mark: Any = None
        self.merges: list[Any] = []


_NO_KEY = object()


def load(text: str) -> tuple[Any, list[str]]:
    """The document's data and its duplicate-key errors. Raises :class:`DocumentError`."""
    stack: list[_Open] = []
    anchors: dict[str, tuple[Any, int]] = {}
    open_anchors: set[str] = set()
    duplicates: list[str] = []
    result: Any = None
    documents = 0
    own = added = 0
    events: Iterator[Any] = yaml.parse(text, Loader=_Parser)
    try:
        for event in events:
            kind = type(event)
            if kind is yaml.ScalarEvent:
                own += 1
                value, size = _scalar(event), 1
                if event.anchor is not None:
                    anchors[event.anchor] = (value, 1)
            elif kind is yaml.AliasEvent:
                name = event.anchor
                if name in open_anchors:
                    raise DocumentError(
                        f"{_where(event.start_mark)}: alias *{_short(name)} refers to the "
                        "node that contains it (a recursive structure)"
                    )
                if name not in anchors:
                    raise DocumentError(
                        f"{_where(event.start_mark)}: alias *{_short(name)} has no anchor"
                    )
                # Each use of an alias costs its anchor's whole expanded size.
                value, size = anchors[name]
                added += size
                if added > _ALIAS_HARD_LIMIT:
                    raise _too_many(event.start_mark)
            elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                own += 1
                is_map = kind is yaml.MappingStartEvent
                tag = event.tag
                if tag not in (None, "!", _TAG + ("map" if is_map else "seq")):
                    raise DocumentError(
                        f"{_where(event.start_mark)}: tag {_short(tag)} is not supported"
                    )
                if len(stack) >= MAX_DEPTH:
                    raise DocumentError(
                        f"{_where(event.start_mark)}: nested more than {MAX_DEPTH} levels deep"
                    )
                stack.append(_Open(is_map, event.anchor, event.start_mark))
                if event.anchor is not None:
                    open_anchors.add(event.anchor)
                continue
            elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                done = stack.pop()
                value, size = done.value, done.size
                if done.merges:
                    value = _merged(done)
                if done.anchor is not None:
                    open_anchors.discard(done.anchor)
                    anchors[done.anchor] = (value, size)
            elif kind is yaml.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise DocumentError(
                        f"{_where(event.start_mark)}: expected one document, found another "
                        "(a second ---)"
                    )
                continue
            else:
                continue
            if not stack:
                result = value
                continue
            parent = stack[-1]
            parent.size += size
            if not parent.is_map:
                parent.value.append(value)
            elif parent.key is _NO_KEY:
                if isinstance(value, dict | list):
                    raise DocumentError(
                        f"{_where(event.start_mark)}: a mapping key must be a plain value"
                    )
                parent.key, parent.key_mark = value, event.start_mark
            else:
                key, parent.key = parent.key, _NO_KEY
                if key is _MERGE:
                    _add_merge(parent, value, event.start_mark)
                elif key in parent.value:
                    duplicates.append(
                        f"{_where(parent.key_mark)}: key {_short(str(key))!r} appears twice "
                        "in one mapping (YAML would keep the last silently)"
                    )
                    parent.value[key] = value
                else:
                    parent.value[key] = value
    except yaml.YAMLError as exc:
        raise DocumentError(_yaml_problem(exc)) from None
    if added > max(MAX_ALIAS_NODES, 2 * own):
        raise _too_many(None)
    return result, duplicates


def _add_merge(parent: _Open, value: Any, mark: Any) -> None:
    sources = value if isinstance(value, list) else [value]
    if not all(isinstance(source, dict) for source in sources):
        raise DocumentError(f"{_where(mark)}: a merge (<<) takes a mapping or a list of them")
    parent.merges.extend(sources)


def _merged(done: _Open) -> dict[Any, Any]:
    """Keys written in the mapping win over merged ones; earlier merges over later ones."""
    merged: dict[Any, Any] = {}
    for source in done.merges:
        for key, value in source.items():
            merged.setdefault(key, value)
    merged.update(done.value)
    return merged


def _too_many(mark: Any) -> DocumentError:
    where = f"{_where(mark)}: " if mark is not None else ""
    return DocumentError(
        f"{where}aliases expand the document by more than {MAX_ALIAS_NODES:,} nodes "
        "(a \"billion laughs\" file?)"
    )


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or "invalid YAML"
    where = f" at {_where(mark)}" if mark is not None else ""
    if isinstance(exc, yaml.reader.ReaderError):
        where = f" at character {exc.position + 1}"
    return f"YAML syntax error{where}: {problem}"
