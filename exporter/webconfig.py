"""``--web.config.file``: the Prometheus exporter-toolkit's web configuration format.

The same YAML a node_exporter or blackbox_exporter reads (``tls_server_config``,
``http_server_config``, ``basic_auth_users`` with bcrypt hashes), validated up front: every
error names its field, a certificate that does not load or has expired is refused, and
relative paths are relative to the web config file, as in the toolkit. The few toolkit keys
this exporter cannot honour are refused by name rather than ignored.
"""

from __future__ import annotations

import re
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# Go's names (crypto/tls) -> OpenSSL's. TLS 1.3 suites are not configurable, as in Go.
GO_CIPHER_SUITES: dict[str, str] = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
}
TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_BCRYPT = re.compile(r"^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$")
_UNSUPPORTED = {
    "tls_server_config.curve_preferences": "not supported (OpenSSL picks the curves)",
    "tls_server_config.client_allowed_sans": "not supported; use a dedicated client CA",
    "tls_server_config.cert": "not supported; use cert_file",
    "tls_server_config.key": "not supported; use key_file",
    "tls_server_config.client_ca": "not supported; use client_ca_file",
}


class WebConfigError(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TLSServerConfig(_Strict):
    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True

    @field_validator("min_version", "max_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value in ("TLS10", "TLS11"):
            raise ValueError("TLS 1.0 and 1.1 are refused (insecure); use TLS12 or TLS13")
        if value not in TLS_VERSIONS:
            raise ValueError(f"must be one of {', '.join(TLS_VERSIONS)}")
        return value

    @field_validator("client_auth_type")
    @classmethod
    def _client_auth(cls, value: str) -> str:
        if value in ("RequestClientCert", "RequireAnyClientCert"):
            raise ValueError(
                f"{value} accepts client certificates without verifying them: not supported;"
                " use VerifyClientCertIfGiven or RequireAndVerifyClientCert"
            )
        if value not in CLIENT_AUTH:
            raise ValueError(f"must be one of {', '.join(CLIENT_AUTH)}")
        return value

    @field_validator("cipher_suites")
    @classmethod
    def _ciphers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [c for c in value if c not in GO_CIPHER_SUITES]
        if unknown:
            raise ValueError(f"unknown cipher suite {unknown[0]} (Go's names, TLS 1.2 only)")
        return value


class HTTPServerConfig(_Strict):
    http2: bool = True
    headers: dict[str, str] = Field(default_factory=dict)


class WebConfig(_Strict):
    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig = HTTPServerConfig()
    basic_auth_users: dict[str, str] = Field(default_factory=dict)

    @field_validator("basic_auth_users")
    @classmethod
    def _hashes(cls, value: dict[str, str]) -> dict[str, str]:
        for user, hashed in value.items():
            if not _BCRYPT.match(str(hashed)):
                # The value is a password hash: never echo it.
                raise ValueError(f"{user}: not a bcrypt hash ($2a$, $2b$ or $2y$, 60 chars)")
        return value


@dataclass(frozen=True)
class LoadedWebConfig:
    """A validated web config and what was built from it."""

    path: Path | None
    config: WebConfig
    ssl_context: ssl.SSLContext | None
    watched: tuple[Path, ...]  # files whose change triggers a reload


def _errors(exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in error["loc"])
        if where in _UNSUPPORTED:
            lines.append(f"{where}: {_UNSUPPORTED[where]}")
            continue
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key (check the spelling)"
        lines.append(f"{where or '<top level>'}: {message}")
    return lines


def _resolve(base: Path, path: Path) -> Path:
    return path if path.is_absolute() else base / path


def _check_certificate(path: Path, now: float) -> str:
    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    except ValueError:
        return f"{path} holds no PEM certificate"
    leaf = certs[0]
    if leaf.not_valid_after_utc.timestamp() < now:
        when = leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"the certificate in {path} expired at {when}"
    if leaf.not_valid_before_utc.timestamp() > now:
        return f"the certificate in {path} is not valid yet"
    return ""


def build_ssl_context(tls: TLSServerConfig, base: Path, now: float) -> ssl.SSLContext:
    """A server context for ``tls``; :class:`WebConfigError` naming the field on failure.
    Blocking (reads files): call it from a thread."""
    cert, key = _resolve(base, tls.cert_file), _resolve(base, tls.key_file)
    problem = _check_certificate(cert, now)
    if problem:
        raise WebConfigError([f"tls_server_config.cert_file: {problem}"])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = TLS_VERSIONS[tls.min_version]
    ctx.maximum_version = TLS_VERSIONS[tls.max_version]
    if ctx.minimum_version > ctx.maximum_version:
        raise WebConfigError(["tls_server_config.max_version: below min_version"])
    ctx.options |= ssl.OP_NO_COMPRESSION
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    if tls.cipher_suites:
        try:
            ctx.set_ciphers(":".join(GO_CIPHER_SUITES[c] for c in tls.cipher_suites))
        except ssl.SSLError:
            raise WebConfigError(
                ["tls_server_config.cipher_suites: none of them is available here"]
            ) from None
    try:
        ctx.load_cert_chain(cert, key)
    except FileNotFoundError:
        raise WebConfigError([f"tls_server_config.key_file: no such file {key}"]) from None
    except (ssl.SSLError, OSError) as exc:
        why = getattr(exc, "reason", None) or type(exc).__name__
        raise WebConfigError(
            [f"tls_server_config.key_file: cannot load the key for {cert} ({why})"]
        ) from None
    ctx.verify_mode = CLIENT_AUTH[tls.client_auth_type]
    if ctx.verify_mode != ssl.CERT_NONE:
        if tls.client_ca_file is None:
            raise WebConfigError(
                [f"tls_server_config.client_ca_file: required with {tls.client_auth_type}"]
            )
        try:
            ctx.load_verify_locations(cafile=str(_resolve(base, tls.client_ca_file)))
        except (ssl.SSLError, OSError):
            raise WebConfigError(
                [f"tls_server_config.client_ca_file: cannot load {tls.client_ca_file}"]
            ) from None
    return ctx


def parse_web_config(data: Any, base: Path, path: Path | None = None) -> LoadedWebConfig:
    try:
        config = WebConfig.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise WebConfigError(_errors(exc)) from None
    ctx = None
    watched: list[Path] = [path] if path is not None else []
    tls = config.tls_server_config
    if tls is not None:
        ctx = build_ssl_context(tls, base, time.time())
        alpn = ["h2", "http/1.1"] if config.http_server_config.http2 else ["http/1.1"]
        ctx.set_alpn_protocols(alpn)
        watched += [_resolve(base, tls.cert_file), _resolve(base, tls.key_file)]
        if tls.client_ca_file is not None:
            watched.append(_resolve(base, tls.client_ca_file))
    return LoadedWebConfig(path, config, ctx, tuple(watched))


def load_web_config(path: Path) -> LoadedWebConfig:
    """Read and validate the file; :class:`WebConfigError` with every problem found.
    Blocking: call it from a thread once the loop runs."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise WebConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise WebConfigError([f"{path}: not valid YAML{where}"]) from None
    return parse_web_config(data, path.parent, path)

