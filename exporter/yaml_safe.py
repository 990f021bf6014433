"""Reading a YAML document that may be hostile, within bounded time and memory.

A config file is input. PyYAML builds aliases as shared objects, so a ten-line "billion
laughs" file loads at once and then explodes in whatever walks the result; a file of a
few thousand nested brackets overflows the recursive composer. So before anything is
built, one pass over the parser's event stream (libyaml's parser keeps its own stack and
does not recurse) measures the document: its nesting depth, and how many nodes it holds
once every alias is expanded, computed from each anchor's size without expanding
anything. Only a document within the limits is composed. Duplicate keys in one mapping,
which YAML keeps silently (the last wins), are reported as errors too.
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

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class DocumentError(Exception):
    """The document cannot be read. ``str()`` says where and why, without the content."""


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def measure(text: str) -> None:
    """Raise :class:`DocumentError` when ``text`` nests too deeply, expands too far through
    aliases or refers to an anchor from inside itself (a recursive structure)."""
    # Per open collection: [expanded node count, anchor name or None].
    stack: list[list[Any]] = []
    open_anchors: set[str] = set()
    sizes: dict[str, int] = {}
    own = added = 0
    try:
        events: Iterator[Any] = yaml.parse(text, Loader=_Loader)
        for event in events:
            kind = type(event)
            if kind is yaml.ScalarEvent:
                own += 1
                if event.anchor is not None:
                    sizes[event.anchor] = 1
                if stack:
                    stack[-1][0] += 1
            elif kind is yaml.AliasEvent:
                if event.anchor in open_anchors:
                    raise DocumentError(
                        f"{_where(event.start_mark)}: alias *{event.anchor} refers to the "
                        "node that contains it (a recursive structure)"
                    )
                # Each use of an alias costs its anchor's whole expanded size.
                size = sizes.get(event.anchor, 1)
                added += size
                if added > _ALIAS_HARD_LIMIT:
                    raise _too_many(event.start_mark)
                if stack:
                    stack[-1][0] += size
            elif kind is yaml.SequenceStartEvent or kind is yaml.MappingStartEvent:
                own += 1
                if len(stack) >= MAX_DEPTH:
                    raise DocumentError(
                        f"{_where(event.start_mark)}: nested more than {MAX_DEPTH} levels deep"
                    )
                stack.append([1, event.anchor])
                if event.anchor is not None:
                    open_anchors.add(event.anchor)
            elif kind is yaml.SequenceEndEvent or kind is yaml.MappingEndEvent:
                size, anchor = stack.pop()
                if anchor is not None:
                    open_anchors.discard(anchor)
                    sizes[anchor] = size
                if stack:
                    stack[-1][0] += size
    except yaml.YAMLError as exc:
        raise DocumentError(_yaml_problem(exc)) from None
    if added > max(MAX_ALIAS_NODES, 2 * own):
        raise _too_many(None)


def _too_many(mark: Any) -> DocumentError:
    where = f"{_where(mark)}: " if mark is not None else ""
    return DocumentError(
        f"{where}aliases expand the document by more than {MAX_ALIAS_NODES:,} nodes "
        "(a \"billion laughs\" file?)"
    )


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "invalid YAML"
    where = f" at {_where(mark)}" if mark is not None else ""
    return f"YAML syntax error{where}: {problem}"


class _CheckingLoader(_Loader):  # type: ignore[valid-type,misc]
    """The safe loader, noting keys that appear twice in one mapping."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[str] = []

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                self.duplicates.append(
                    f"{_where(key_node.start_mark)}: key {_short(key_node.value)!r} appears "
                    "twice in one mapping (YAML would keep the last silently)"
                )
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def load(text: str) -> tuple[Any, list[str]]:
    """The document's data and its duplicate-key errors. Raises :class:`DocumentError`."""
    measure(text)
    loader = _CheckingLoader(text)
    try:
        return loader.get_single_data(), loader.duplicates
    except yaml.YAMLError as exc:
        raise DocumentError(_yaml_problem(exc)) from None
    except ValueError as exc:
        # int() refuses numbers of more than 4,300 digits (CVE-2020-10735).
        if "digits" in str(exc):
            raise DocumentError("a number in the file has too many digits") from None
        raise DocumentError(f"a value cannot be read: {type(exc).__name__}") from None
    finally:
        loader.dispose()
