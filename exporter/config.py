"""Loading and validating the YAML config file.

Validation happens in two steps so that every error names its place in the file: the
top level and each probe's common keys (``name``, ``kind``, ``interval``, ``timeout``,
``labels``) first, then the kind's own model for the remaining keys. All errors are
collected, not just the first, and reported as ``probes[3].timeout: <why>``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from exporter import sharding
from probes import KIND_MODULES, load_kind
from probes.base import Duration, KindConfig, ProbeKind, format_duration

DEFAULT_LISTEN_ADDRESS = ":9816"
RESERVED_LABELS = frozenset({"probe", "kind", "reason", "le", "instance", "job", "shard"})
_LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_ENV_REF_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Environment variables whose values are treated as secrets wherever they are used.
SECRET_VAR_RE = re.compile(r"PASS|TOKEN|SECRET|KEY|DSN|CRED|AUTH|PRIVATE", re.IGNORECASE)
# Seconds kept between the client's own timeout and the hard deadline, so the client
# normally gives up first and reports a precise reason.
_CLIENT_TIMEOUT_MARGIN = 0.9


class ConfigError(Exception):
    """The config cannot be used. ``errors`` are ``path: why`` lines, one per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    for name in labels:
        if not _LABEL_NAME_RE.match(name) or name.startswith("__"):
            raise ValueError(f"label name {name!r} is not a valid Prometheus label name")
        if name in RESERVED_LABELS:
            raise ValueError(f"label name {name!r} is reserved by the exporter")
    return labels


class GlobalConfig(_Strict):
    """The ``global:`` section."""

    listen_address: str | None = None
    default_interval: Duration = 30.0
    default_timeout: Duration = 10.0
    start_spread: Duration = 5.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["logfmt", "json"] = "logfmt"
    labels: dict[str, str] = Field(default_factory=dict)
    history_size: int = Field(default=20, ge=1, le=1000)
    demo: bool = False
    shard: str | None = None  # "i/n": run only this shard's probes (exporter/sharding.py)

    _labels = field_validator("labels")(_check_labels)

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str | None) -> str | None:
        return None if value is None else str(sharding.parse_shard(value))

    @field_validator("default_interval", "default_timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value


class _ProbeCommon(_Strict):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    kind: str
    interval: Duration | None = None
    timeout: Duration | None = None
    labels: dict[str, str] = Field(default_factory=dict)

    _labels = field_validator("labels")(_check_labels)


class _RawConfig(_Strict):
    global_: GlobalConfig = Field(default_factory=GlobalConfig, alias="global")
    probes: list[dict[str, Any]] = Field(default_factory=list)


COMMON_KEYS = frozenset(_ProbeCommon.model_fields)


@dataclass(frozen=True)
class ProbeSpec:
    """One configured probe, fully validated. Equal specs mean an unchanged probe."""

    name: str
    kind: str
    interval: float
    timeout: float
    labels: tuple[tuple[str, str], ...]
    settings: KindConfig
    # Values that came from secret-looking ${VAR}s (see SECRET_VAR_RE): whatever field
    # they landed in (a token in a URL's query string), they never reach a page or a log.
    secret_values: frozenset[str] = frozenset()

    @property
    def kind_impl(self) -> ProbeKind[Any, Any]:
        return load_kind(self.kind)

    def redact(self, text: str) -> str:
        for value in self.secret_values:
            text = text.replace(value, "<redacted>")
        return text

    def target(self) -> str:
        """What is probed, for humans, with secrets redacted."""
        return self.redact(self.kind_impl.target(self.settings))


@dataclass(frozen=True)
class Config:
    global_: GlobalConfig
    probes: tuple[ProbeSpec, ...]
    source: str = ""

    def probe(self, name: str) -> ProbeSpec | None:
        return next((p for p in self.probes if p.name == name), None)


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read, expand and validate a config file. Raises :class:`ConfigError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: config file is not UTF-8 text"]) from None
    return parse_config(text, environ, source=str(path))


def parse_config(
    text: str, environ: Mapping[str, str] | None = None, source: str = "<config>"
) -> Config:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError([f"{source}: YAML syntax error{where}: {problem}"]) from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError([f"{source}: top level must be a mapping with 'global' and 'probes'"])

    errors: list[str] = []
    secrets: set[str] = set()
    document = _expand_env(
        document, os.environ if environ is None else environ, "", errors, secrets
    )
    try:
        raw = _RawConfig.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(errors + _format_errors(exc, "")) from None

    specs: list[ProbeSpec] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(raw.probes):
        spec = _build_probe(entry, f"probes[{index}]", raw.global_, errors, frozenset(secrets))
        if spec is None:
            continue
        if spec.name in seen:
            errors.append(
                f"probes[{index}].name: duplicate probe name {spec.name!r} "
                f"(also probes[{seen[spec.name]}])"
            )
            continue
        seen[spec.name] = index
        specs.append(spec)
    if errors:
        raise ConfigError(errors)
    return sharding.apply(Config(raw.global_, tuple(specs), source))


def _build_probe(
    entry: dict[str, Any],
    path: str,
    global_: GlobalConfig,
    errors: list[str],
    secrets: frozenset[str],
) -> ProbeSpec | None:
    common_part = {k: v for k, v in entry.items() if k in COMMON_KEYS}
    kind_part = {k: v for k, v in entry.items() if k not in COMMON_KEYS}
    try:
        common = _ProbeCommon.model_validate(common_part)
    except ValidationError as exc:
        errors.extend(_format_errors(exc, path))
        return None
    if common.kind not in KIND_MODULES:
        known = ", ".join(sorted(KIND_MODULES))
        errors.append(f"{path}.kind: unknown kind {common.kind!r} (known: {known})")
        return None
    try:
        kind = load_kind(common.kind)
    except ImportError as exc:
        errors.append(f"{path}.kind: kind {common.kind!r} cannot be loaded ({exc.name} missing)")
        return None
    interval = next(
        i for i in (common.interval, kind.default_interval, global_.default_interval)
        if i is not None
    )
    timeout = common.timeout if common.timeout is not None else global_.default_timeout
    ok = True
    if interval <= 0:
        errors.append(f"{path}.interval: must be greater than 0")
        ok = False
    if timeout <= 0:
        errors.append(f"{path}.timeout: must be greater than 0")
        ok = False
    elif timeout >= interval:
        errors.append(
            f"{path}.timeout: must be less than interval ({format_duration(interval)})"
        )
        ok = False
    if "client_timeout" in kind_part:
        errors.append(f"{path}.client_timeout: unknown key (it derives from timeout)")
        return None
    try:
        settings = kind.config_model.model_validate(
            {**kind_part, "client_timeout": max(timeout * _CLIENT_TIMEOUT_MARGIN, 0.001)}
        )
    except ValidationError as exc:
        errors.extend(_format_errors(exc, path))
        return None
    if not ok:
        return None
    labels = {**global_.labels, **common.labels}
    return ProbeSpec(
        common.name, common.kind, interval, timeout, tuple(sorted(labels.items())), settings,
        secrets,
    )


def _expand_env(
    value: Any, environ: Mapping[str, str], path: str, errors: list[str], secrets: set[str]
) -> Any:
    """Replace ``${VAR}`` in every string (``$$`` is a literal ``$``); collect the values of
    secret-looking variables into ``secrets``."""
    if isinstance(value, dict):
        return {
            k: _expand_env(v, environ, f"{path}.{k}" if path else str(k), errors, secrets)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _expand_env(v, environ, f"{path}[{i}]", errors, secrets)
            for i, v in enumerate(value)
        ]
    if isinstance(value, str) and "$" in value:

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name = match.group(1)
            if name not in environ:
                errors.append(f"{path}: environment variable {name} is not set")
                return ""
            if SECRET_VAR_RE.search(name) and environ[name]:
                secrets.add(environ[name])
            return environ[name]

        return _ENV_REF_RE.sub(substitute, value)
    return value


_MESSAGES = {
    "extra_forbidden": "unknown key (check the spelling)",
    "missing": "required key is missing",
}


def _format_errors(exc: ValidationError, prefix: str) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        location = prefix
        for part in error["loc"]:
            if isinstance(part, int):
                location += f"[{part}]"
            else:
                location += f".{part}" if location else str(part)
        location = location.replace("global_", "global")
        message = _MESSAGES.get(error["type"], error["msg"])
        message = message.removeprefix("Value error, ")
        lines.append(f"{location or '<top level>'}: {message}")
    return lines
