"""A metric or config key that is not documented does not exist: check both."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from exporter.config import GlobalConfig
from probes import KIND_MODULES, load_kind

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
_METRIC_HELPERS = {"gauge", "gauges", "counter", "info", "Metric"}


def _kind_doc(kind: str) -> str:
    return (ROOT / "docs" / "probes" / f"{kind}.md").read_text()


def _all_docs() -> str:
    return README + "".join(p.read_text() for p in (ROOT / "docs").rglob("*.md"))


def _model_keys(model: type[BaseModel]) -> set[str]:
    """Config keys of a model and of the nested models its fields hold."""
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        if name == "client_timeout":  # set by the daemon, not a config key
            continue
        keys.add(field.alias or name)
        for arg in _nested_models(field.annotation):
            keys |= _model_keys(arg)
    return keys


def _nested_models(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in getattr(annotation, "__args__", ()):
        found += _nested_models(arg)
    return found


@pytest.mark.parametrize("kind", sorted(k for k in KIND_MODULES if k != "fake"))
def test_every_config_key_of_every_kind_is_documented(kind: str) -> None:
    doc = _kind_doc(kind)
    # A nested key may be documented with its parent's path: `endpoints[].address`.
    missing = sorted(
        key for key in _model_keys(load_kind(kind).config_model)
        if not re.search(rf"[`.]{re.escape(key)}`", doc)
    )
    assert not missing, f"docs/probes/{kind}.md does not document: {missing}"


def test_every_global_key_is_documented() -> None:
    missing = sorted(key for key in _model_keys(GlobalConfig) if f"`{key}`" not in README)
    assert not missing, f"README does not document global keys: {missing}"


def _emitted_metric_names() -> dict[str, str]:
    """Metric names passed as literals to the metric helpers anywhere in probes/."""
    names: dict[str, str] = {}
    for path in sorted((ROOT / "probes").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if called in _METRIC_HELPERS and isinstance(first, ast.Constant):
                if isinstance(first.value, str) and re.fullmatch(r"[a-z_:]+", first.value):
                    names[first.value] = str(path.relative_to(ROOT))
    return names


def test_every_emitted_metric_is_documented() -> None:
    docs = _all_docs()
    names = _emitted_metric_names()
    assert len(names) > 50  # the scan found the probes' metrics at all
    missing = sorted(
        f"{name} ({where})" for name, where in names.items()
        if not re.search(rf"`{re.escape(name)}(_total|_info)?[`{{]", docs)
    )
    assert not missing, f"metrics emitted but not documented: {missing}"
