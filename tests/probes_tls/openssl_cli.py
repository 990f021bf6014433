"""Certificates made with the real ``openssl`` command line, the way a user makes them
(Debian's default openssl.cnf, ``req -x509``, ``x509 -req``), and OpenSSL's own verdict."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="no openssl command line")


class OpenSSL:
    def __init__(self, tmp: Path) -> None:
        self.dir = tmp

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert OPENSSL is not None
        return subprocess.run(
            [OPENSSL, *args], cwd=self.dir, capture_output=True, text=True, timeout=30,
            check=False,
        )

    def ok(self, *args: str) -> None:
        done = self.run(*args)
        assert done.returncode == 0, (args, done.stderr)

    def path(self, name: str) -> Path:
        return self.dir / name

    def root(self, name: str, cn: str, *addext: str, rsa: bool = True) -> Path:
        """``openssl req -x509``: Debian's v3_ca section (basicConstraints critical
        CA:TRUE, SKI, AKI; no keyUsage) plus any ``-addext``."""
        key = ["-newkey", "rsa:2048"] if rsa else [
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        extra = [a for ext in addext for a in ("-addext", ext)]
        self.ok("req", "-x509", *key, "-nodes", "-keyout", f"{name}.key", "-out",
                f"{name}.pem", "-days", "365", "-subj", f"/CN={cn}", *extra)
        return self.path(f"{name}.pem")

    def v1_root(self, name: str, cn: str) -> Path:
        """``openssl x509 -req -signkey``: the self-signed v1 certificate of many tutorials."""
        self.ok("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                "-out", f"{name}.key")
        self.ok("req", "-new", "-key", f"{name}.key", "-subj", f"/CN={cn}", "-out",
                f"{name}.csr")
        self.ok("x509", "-req", "-in", f"{name}.csr", "-signkey", f"{name}.key", "-days",
                "365", "-out", f"{name}.pem")
        return self.path(f"{name}.pem")

    def issue(self, name: str, cn: str, issuer: str, ext: str = "", *args: str) -> Path:
        """``openssl x509 -req -CA``, with the extension lines of ``-extfile`` (none: the
        certificate gets only SKI and AKI, as OpenSSL 3 adds)."""
        self.ok("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        extfile = []
        if ext:
            self.path(f"{name}.ext").write_text(ext.replace(";", "\n") + "\n")
            extfile = ["-extfile", f"{name}.ext"]
        self.ok("x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.pem", "-CAkey",
                f"{issuer}.key", "-CAcreateserial", "-days", "90", "-out", f"{name}.pem",
                *extfile, *args)
        return self.path(f"{name}.pem")

    def verifies(self, leaf: str, root: str, *untrusted: str) -> bool:
        """OpenSSL's verdict as a TLS client reaches it: sslserver purpose, Debian's
        security level 2 (no SHA-1, RSA >= 2048)."""
        extra = [a for u in untrusted for a in ("-untrusted", f"{u}.pem")]
        done = self.run("verify", "-purpose", "sslserver", "-auth_level", "2", "-CAfile",
                        f"{root}.pem", *extra, f"{leaf}.pem")
        return done.returncode == 0
