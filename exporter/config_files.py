"""What a probe's validated settings refer to: secret values, secret files, other files.

The walks cover nested models and lists of them (a ``tls`` probe's endpoints), so a kind
needs no code of its own for redaction or for ``check-config``'s file checks.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr


def _fields(model: BaseModel, path: str) -> Iterator[tuple[str, str, Any, BaseModel]]:
    """``(location, field name, value, owner)`` for every field, nested models included."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        where = f"{path}.{name}"
        yield where, name, value, model
        items = value if isinstance(value, list | tuple) else [value]
        for index, item in enumerate(items):
            if isinstance(item, BaseModel):
                sub = f"{where}[{index}]" if item is not value else where
                yield from _fields(item, sub)


def inline_secrets(settings: BaseModel) -> frozenset[str]:
    """The values of every ``SecretStr`` field (inline passwords, DSNs, tokens)."""
    return frozenset(
        value.get_secret_value()
        for _, _, value, _ in _fields(settings, "")
        if isinstance(value, SecretStr) and value.get_secret_value()
    )


def secret_files(settings: BaseModel) -> tuple[Path, ...]:
    """The ``*_file`` twins of secret keys (``password_file`` beside ``password``)."""
    out: list[Path] = []
    for _, name, value, owner in _fields(settings, ""):
        twin = name.removesuffix("_file")
        if isinstance(value, Path) and twin != name and twin in type(owner).model_fields:
            out.append(value)
    return tuple(out)


def check_files(settings: BaseModel, path: str) -> list[str]:
    """One error per file the settings name that is missing or unreadable: secret files,
    kubeconfigs, CA bundles, certificates and keys (every ``Path`` field)."""
    errors: list[str] = []
    for where, _, value, _ in _fields(settings, path):
        if isinstance(value, Path):
            problem = _file_problem(value)
            if problem:
                errors.append(f"{where}: {problem}")
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
