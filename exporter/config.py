"""Loading and validating the YAML config file.

Every error names its place in the file (``probes[3].timeout: <why>``) and every error is
reported at once: the file is read within bounds (:mod:`exporter.yaml_safe`), then the
``global`` section, then each probe on its own, its common keys (``name``, ``kind``,
``interval``, ``timeout``, ``labels``) and its kind's model for the rest. A section that
fails does not stop the others; where a probe's value came from a default, the error
says so (``global.default_timeout``) rather than naming a key the user never wrote.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from exporter import config_files, sharding, yaml_safe
from exporter.redaction import redact
from probes import KIND_MODULES, load_kind
from probes.base import Duration, KindConfig, ProbeKind, file_secret_values, format_duration

DEFAULT_LISTEN_ADDRESS = ":9816"
RESERVED_LABELS = frozenset({"probe", "kind", "reason", "le", "instance", "job", "shard"})
_LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_ENV_REF_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Environment variables whose values are treated as secrets wherever they are used.
SECRET_VAR_RE = re.compile(r"PASS|TOKEN|SECRET|KEY|DSN|CRED|AUTH|PRIVATE", re.IGNORECASE)
# Strings exported verbatim as label values: a secret may never be expanded into one.
_VERBATIM_RE = re.compile(r"^(global|probes\[\d+\])\.labels\.|^probes\[\d+\]\.name$")
# Seconds kept between the client's own timeout and the hard deadline, so the client
# normally gives up first and reports a precise reason.
_CLIENT_TIMEOUT_MARGIN = 0.9
# A config file is a few MB even for 10,000 probes; more is a mistake (or /dev/zero).
MAX_FILE_BYTES = 16 * 1024 * 1024
_TOP_LEVEL_KEYS = ("global", "probes")
MAX_STATIC_LABELS = 64
MAX_LABEL_VALUE_LENGTH = 1024


class ConfigError(Exception):
    """The config cannot be used. ``errors`` are ``path: why`` lines, one per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    # Static labels ride on every series of the probe: a huge one multiplies.
    if len(labels) > MAX_STATIC_LABELS:
        raise ValueError(f"at most {MAX_STATIC_LABELS} static labels, not {len(labels)}")
    for name, value in labels.items():
        if len(value) > MAX_LABEL_VALUE_LENGTH:
            raise ValueError(f"the value of label {name[:60]!r} is longer than "
                             f"{MAX_LABEL_VALUE_LENGTH} characters")
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
    # Series switches for very large fleets (see README, "Series per probe").
    run_duration_histogram: bool = True
    precreate_reasons: bool = True

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


COMMON_KEYS = frozenset(_ProbeCommon.model_fields)


@dataclass(frozen=True)
class ProbeSpec:
    """One configured probe, fully validated. Equal specs mean an unchanged probe: the
    identity is the probe's own settings, so a change elsewhere in the file (another
    probe's ``${TOKEN}``) never restarts it."""

    name: str
    kind: str
    interval: float
    timeout: float
    labels: tuple[tuple[str, str], ...]
    settings: KindConfig
    # Secret values of this probe only: secret-looking ${VAR}s it uses (whatever field they
    # landed in: a token in a URL's query string) and its inline secret keys.
    secret_values: frozenset[str] = frozenset()
    # Its ``*_file`` secrets: the values last read from them are masked too.
    secret_files: tuple[Path, ...] = ()

    @property
    def kind_impl(self) -> ProbeKind[Any, Any]:
        return load_kind(self.kind)

    def secrets(self) -> frozenset[str]:
        if not self.secret_files:
            return self.secret_values
        return self.secret_values | file_secret_values(self.secret_files)

    def redact(self, text: str) -> str:
        return redact(text, self.secrets())

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


def load_config(
    path: str | Path, environ: Mapping[str, str] | None = None, *, check_files: bool = False
) -> Config:
    """Read, expand and validate a config file. Raises :class:`ConfigError`.

    ``check_files`` also reports files the probes name (secret files, CA bundles, keys,
    kubeconfigs) that are missing or unreadable, as ``check-config`` does.
    """
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc.strerror}"]) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError([f"{path}: config file is larger than {MAX_FILE_BYTES >> 20} MiB"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: config file is not UTF-8 text"]) from None
    return parse_config(text, environ, source=str(path), check_files=check_files)


def parse_config(
    text: str,
    environ: Mapping[str, str] | None = None,
    source: str = "<config>",
    *,
    check_files: bool = False,
) -> Config:
    try:
        document, errors = yaml_safe.load(text)
    except yaml_safe.DocumentError as exc:
        raise ConfigError([f"{source}: {exc}"]) from None
    env = os.environ if environ is None else environ
    if document is None:
        raise ConfigError(
            errors + [f"{source}: no probes configured (the file is empty; "
                      "write 'probes: []' to run none)"]
        )
    if not isinstance(document, dict):
        raise ConfigError(
            errors + [f"{source}: top level must be a mapping with 'global' and 'probes'"]
        )
    for key in document:
        if key not in _TOP_LEVEL_KEYS:
            errors.append(f"{_key(key)}: unknown key (check the spelling)")

    global_ = _build_global(document.get("global"), env, errors)
    probes = document.get("probes")
    if probes is None:
        where = "probes" if "probes" in document else source
        errors.append(f"{where}: no probes configured (write 'probes: []' to run none)")
        probes = []
    elif not isinstance(probes, list):
        errors.append("probes: must be a list of probes")
        probes = []

    specs: list[ProbeSpec] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(probes):
        path = f"probes[{index}]"
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str):
            if name in seen:
                errors.append(f"{path}.name: duplicate probe name {_short(name)!r} "
                              f"(also probes[{seen[name]}])")
                name = None
            else:
                seen[name] = index
        spec = _build_probe(entry, path, global_, env, errors, check_files)
        if spec is not None and name is not None:
            specs.append(spec)
    if errors:
        raise ConfigError(errors)
    return sharding.apply(Config(global_, tuple(specs), source))


def _build_global(raw: Any, env: Mapping[str, str], errors: list[str]) -> GlobalConfig:
    if raw is None:
        return GlobalConfig()
    if not isinstance(raw, dict):
        errors.append("global: must be a mapping")
        return GlobalConfig()
    expanded = _expand_env(raw, env, "global", errors, set())
    return _validate_partial(GlobalConfig, expanded, "global", errors) or GlobalConfig()


def _validate_partial(
    model: type[_Strict], data: dict[str, Any], path: str, errors: list[str],
    placeholders: Mapping[str, Any] | None = None,
) -> Any:
    """``model`` from ``data``; on errors, report them and retry without the bad keys, so
    the good ones still count (a bad ``name`` must not hide a bad ``port``)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors.extend(format_errors(exc, path))
        bad = {error["loc"][0] for error in exc.errors() if error["loc"]}
    rest = {**(placeholders or {}), **{k: v for k, v in data.items() if k not in bad}}
    try:
        return model.model_validate(rest)
    except ValidationError:
        return None


def _build_probe(
    entry: Any,
    path: str,
    global_: GlobalConfig,
    env: Mapping[str, str],
    errors: list[str],
    check_files: bool,
) -> ProbeSpec | None:
    if not isinstance(entry, dict):
        errors.append(f"{path}: must be a mapping with at least name and kind")
        return None
    before = len(errors)
    secrets: set[str] = set()
    entry = _expand_env(entry, env, path, errors, secrets)
    common_part = {k: v for k, v in entry.items() if k in COMMON_KEYS}
    kind_part = {k: v for k, v in entry.items() if k not in COMMON_KEYS}
    # Placeholders stand in for a missing or bad name/kind so that the other keys are
    # still checked; the probe itself is not built.
    common: _ProbeCommon | None = _validate_partial(
        _ProbeCommon, common_part, path, errors, {"name": "x", "kind": "x"}
    )
    kind_name = entry.get("kind")
    if not isinstance(kind_name, str) or common is None:
        return None
    if kind_name not in KIND_MODULES:
        known = ", ".join(sorted(KIND_MODULES))
        errors.append(f"{path}.kind: unknown kind {_short(kind_name)!r} (known: {known})")
        return None
    try:
        kind = load_kind(kind_name)
    except ImportError as exc:
        errors.append(f"{path}.kind: kind {kind_name!r} cannot be loaded ({exc.name} missing)")
        return None
    interval, timeout = _interval_and_timeout(common, kind, global_, path, errors)
    if "client_timeout" in kind_part:
        errors.append(f"{path}.client_timeout: unknown key (it derives from timeout)")
        return None
    client_timeout = max(timeout * _CLIENT_TIMEOUT_MARGIN, 0.001) if timeout > 0 else 0.001
    try:
        settings = kind.config_model.model_validate({**kind_part, "client_timeout": client_timeout})
    except ValidationError as exc:
        errors.extend(format_errors(exc, path))
        return None
    labels = {**global_.labels, **common.labels}
    for label in sorted(labels.keys() & kind.sample_labels):
        where = f"{path}.labels.{label}" if label in common.labels else f"global.labels.{label}"
        errors.append(
            f"{where}: static label {label!r} collides with the label {label!r} that the "
            f"{kind_name} kind puts on its own samples ({path}); rename the static label"
        )
    if check_files:
        errors.extend(config_files.check_files(settings, path))
    if len(errors) > before:
        return None
    return ProbeSpec(
        common.name, kind_name, interval, timeout, tuple(sorted(labels.items())), settings,
        frozenset(secrets) | config_files.inline_secrets(settings),
        config_files.secret_files(settings),
    )


def _interval_and_timeout(
    common: _ProbeCommon,
    kind: ProbeKind[Any, Any],
    global_: GlobalConfig,
    path: str,
    errors: list[str],
) -> tuple[float, float]:
    if common.interval is not None:
        interval, interval_from = common.interval, f"{path}.interval"
    elif kind.default_interval is not None:
        interval, interval_from = kind.default_interval, f"the {kind.name} kind's default"
    else:
        interval, interval_from = global_.default_interval, "global.default_interval"
    if common.timeout is not None:
        timeout, timeout_from = common.timeout, f"{path}.timeout"
    else:
        timeout, timeout_from = global_.default_timeout, "global.default_timeout"
    if interval <= 0:
        errors.append(f"{path}.interval: must be greater than 0")
    if timeout <= 0:
        errors.append(f"{path}.timeout: must be greater than 0")
    elif interval > 0 and timeout >= interval:
        if common.timeout is not None and common.interval is not None:
            errors.append(
                f"{path}.timeout: must be less than interval ({format_duration(interval)})"
            )
        elif common.timeout is not None:
            errors.append(
                f"{path}.timeout: must be less than interval ({format_duration(interval)}, "
                f"from {interval_from})"
            )
        else:
            errors.append(
                f"{path}: timeout {format_duration(timeout)} (from {timeout_from}) must be "
                f"less than interval {format_duration(interval)} (from {interval_from}); "
                "set timeout on the probe"
            )
    return interval, timeout


def _expand_env(
    value: Any, environ: Mapping[str, str], path: str, errors: list[str], secrets: set[str]
) -> Any:
    """Replace ``${VAR}`` in every string (``$$`` is a literal ``$``); collect the values of
    secret-looking variables into ``secrets``. Nesting is bounded by the YAML reader."""
    if isinstance(value, dict):
        return {
            k: _expand_env(v, environ, f"{path}.{_key(k)}", errors, secrets)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _expand_env(v, environ, f"{path}[{i}]", errors, secrets)
            for i, v in enumerate(value)
        ]
    if isinstance(value, str) and "$" in value:
        reported: set[str] = set()  # one error per variable, however often it is used

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name = match.group(1)
            if name not in environ:
                if name not in reported:
                    reported.add(name)
                    errors.append(f"{path}: environment variable {name} is not set")
                return ""
            if SECRET_VAR_RE.search(name):
                if _VERBATIM_RE.match(path):
                    if name in reported:
                        return ""
                    reported.add(name)
                    errors.append(
                        f"{path}: ${{{name}}} looks like a secret, and labels are exported "
                        "verbatim; a secret cannot be used here"
                    )
                    return ""
                if environ[name]:
                    secrets.add(environ[name])
            return environ[name]

        return _ENV_REF_RE.sub(substitute, value)
    return value


_MESSAGES = {
    "extra_forbidden": "unknown key (check the spelling)",
    "missing": "required key is missing",
}


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _key(key: Any) -> str:
    """A mapping key as it appears in an error location, cut short when it is huge."""
    return _short(str(key))


def format_errors(exc: ValidationError, prefix: str) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        location = prefix
        for part in error["loc"]:
            if isinstance(part, int):
                location += f"[{part}]"
            else:
                location += f".{_key(part)}" if location else _key(part)
        location = location.replace("global_", "global")
        message = _MESSAGES.get(error["type"], error["msg"])
        message = _short(message.removeprefix("Value error, "), 300)
        lines.append(f"{location or '<top level>'}: {message}")
    return lines
