"""What a probe's validated settings refer to: secret values, secret files, other files.

The walks cover nested models and lists of them (a ``tls`` probe's endpoints), so a kind
needs no code of its own for redaction or for ``check-config``'s file checks.
"""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePath
from typing import Any, get_args

from pydantic import BaseModel, SecretStr


@dataclass(frozen=True)
class _Plan:
    """The fields of one model class worth looking at: 10,000 probes are walked at load."""

    secrets: tuple[str, ...]  # SecretStr fields
    paths: tuple[str, ...]  # Path fields
    secret_files: tuple[str, ...]  # Path fields that are the *_file twin of another field
    nested: tuple[str, ...]  # fields that may hold models (or lists of them)


def _types(annotation: Any) -> Iterator[Any]:
    yield annotation
    for arg in get_args(annotation):
        yield from _types(arg)


@cache
def _plan(cls: type[BaseModel]) -> _Plan:
    secrets: list[str] = []
    paths: list[str] = []
    files: list[str] = []
    nested: list[str] = []
    for name, info in cls.model_fields.items():
        types = list(_types(info.annotation))
        if SecretStr in types:
            secrets.append(name)
        if any(isinstance(t, type) and issubclass(t, PurePath) for t in types):
            paths.append(name)
            twin = name.removesuffix("_file")
            if twin != name and twin in cls.model_fields:
                files.append(name)
        if any(isinstance(t, type) and issubclass(t, BaseModel) for t in types):
            nested.append(name)
    return _Plan(tuple(secrets), tuple(paths), tuple(files), tuple(nested))


def _models(model: BaseModel, path: str) -> Iterator[tuple[str, BaseModel]]:
    """``(location, model)`` for the model and every model nested in it."""
    yield path, model
    for name in _plan(type(model)).nested:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from _models(value, f"{path}.{name}")
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from _models(item, f"{path}.{name}[{index}]")


def inline_secrets(settings: BaseModel) -> frozenset[str]:
    """The values of every ``SecretStr`` field (inline passwords, DSNs, tokens)."""
    out: set[str] = set()
    for _, model in _models(settings, ""):
        for name in _plan(type(model)).secrets:
            value = getattr(model, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                out.add(value.get_secret_value())
    return frozenset(out)


def secret_files(settings: BaseModel) -> tuple[Path, ...]:
    """The ``*_file`` twins of secret keys (``password_file`` beside ``password``)."""
    out: list[Path] = []
    for _, model in _models(settings, ""):
        for name in _plan(type(model)).secret_files:
            value = getattr(model, name)
            if isinstance(value, Path):
                out.append(value)
    return tuple(out)


def check_files(settings: BaseModel, path: str) -> list[str]:
    """One error per file the settings name that is missing or unreadable: secret files,
    kubeconfigs, CA bundles, certificates and keys (every ``Path`` field), and per
    certificate glob that matches nothing."""
    errors: list[str] = []
    for where, model in _models(settings, path):
        for name in _plan(type(model)).paths:
            value = getattr(model, name)
            if isinstance(value, Path):
                problem = _file_problem(value)
                if problem:
                    errors.append(f"{where}.{name}: {problem}")
        # Certificate files given as globs (the tls kind's ``files``): one must match.
        patterns = getattr(model, "files", None) if "files" in type(model).model_fields else None
        if isinstance(patterns, list | tuple):
            for index, pattern in enumerate(patterns):
                if isinstance(pattern, str) and next(
                    glob.iglob(pattern, recursive=True), None
                ) is None:
                    errors.append(f"{where}.files[{index}]: no file matches {pattern}")
    return errors


def _file_problem(path: Path) -> str:
    try:
        info = path.stat()
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or type(exc).__name__}"
    if not stat.S_ISREG(info.st_mode):
        return f"{path} is not a regular file"
    if not os.access(path, os.R_OK):
        return f"cannot read {path}: permission denied"
    return ""
