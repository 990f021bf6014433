"""Response checks of the ``http`` probe kind (private): JSON-field checks.

A check is either a mapping ``{path: "status", equals: "ok"}`` (exactly one of
``equals``, ``not_equals``, ``matches``, ``exists``) or the short string form
``status == "ok"`` / ``items.0.ready != false`` whose right side is a JSON literal.
Paths are dot-separated keys; an all-digit segment indexes a list.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

_OPS = ("equals", "not_equals", "matches", "exists")
_SHORT_RE = re.compile(r"^\s*([^\s=!]+)\s*(==|!=)\s*(.+?)\s*$")
_MISSING = object()


class JsonCheck(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    equals: Any = None
    not_equals: Any = None
    matches: str | None = None
    exists: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        m = _SHORT_RE.match(value)
        if not m:
            raise ValueError('json check must look like: status == "ok" (or use path/equals)')
        path, op, literal = m.groups()
        try:
            expected = json.loads(literal)
        except ValueError:
            raise ValueError(
                f"right side of {value!r} must be a JSON literal, e.g. \"ok\", 3, true, null"
            ) from None
        return {"path": path, "equals" if op == "==" else "not_equals": expected}

    @model_validator(mode="after")
    def _one_op(self) -> JsonCheck:
        given = [op for op in _OPS if op in self.model_fields_set]
        if len(given) != 1:
            raise ValueError("json check needs exactly one of equals, not_equals, matches, exists")
        if self.matches is not None:
            try:
                re.compile(self.matches)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {self.matches!r}: {exc}") from None
        if not self.path or any(seg == "" for seg in self.path.split(".")):
            raise ValueError(f"invalid json path {self.path!r}")
        return self

    def describe(self) -> str:
        if "equals" in self.model_fields_set:
            return f"{self.path} == {json.dumps(self.equals)}"
        if "not_equals" in self.model_fields_set:
            return f"{self.path} != {json.dumps(self.not_equals)}"
        if self.matches is not None:
            return f"{self.path} =~ {self.matches!r}"
        return f"{self.path} {'exists' if self.exists else 'is absent'}"

    def evaluate(self, document: Any) -> str | None:
        """``None`` when the check passes, else a short explanation."""
        value = _lookup(document, self.path)
        if "exists" in self.model_fields_set:
            present = value is not _MISSING
            if present == bool(self.exists):
                return None
            return f"{self.describe()}: failed"
        if value is _MISSING:
            return f"{self.describe()}: path not found"
        got = _short(value)
        if "equals" in self.model_fields_set:
            return None if _same(value, self.equals) else f"{self.describe()}: got {got}"
        if "not_equals" in self.model_fields_set:
            return None if not _same(value, self.not_equals) else f"{self.describe()}: got {got}"
        assert self.matches is not None
        text = value if isinstance(value, str) else json.dumps(value)
        return None if re.search(self.matches, text) else f"{self.describe()}: got {got}"


def _same(a: Any, b: Any) -> bool:
    # JSON semantics: true is not 1.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _lookup(document: Any, path: str) -> Any:
    current = document
    for segment in path.split("."):
        if isinstance(current, dict):
            if segment not in current:
                return _MISSING
            current = current[segment]
        elif isinstance(current, list) and segment.isdigit():
            index = int(segment)
            if index >= len(current):
                return _MISSING
            current = current[index]
        else:
            return _MISSING
    return current
