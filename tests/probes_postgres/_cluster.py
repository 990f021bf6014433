"""Throw-away PostgreSQL clusters and PgBouncer instances for the probe tests.

``initdb`` runs once per worker into a template directory; every cluster is a copy of it
(cheaper than initdb). initdb, pg_ctl and pgbouncer refuse to run as root, so when the
tests run as root they are run as the ``postgres`` OS user through ``runuser``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SUPERUSER_PASSWORD = "s3cret-super-Pw"


def pg_bin() -> Path:
    """The newest installed PostgreSQL's bin directory (Debian layout)."""
    versions = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not versions:
        raise RuntimeError("no PostgreSQL installed: run `make services`")
    return versions[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _as_service_user(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _own(path: Path) -> None:
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        for p in [path, *path.rglob("*")]:
            os.lchown(p, pw.pw_uid, pw.pw_gid)


def make_workdir(prefix: str) -> Path:
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    _own(base)
    return base


def make_template(base: Path) -> Path:
    """initdb once: local (socket) trust, host scram with a superuser password."""
    data = base / "template"
    pwfile = base / "pw"
    pwfile.write_text(SUPERUSER_PASSWORD + "\n")
    _own(base)
    subprocess.run(
        _as_service_user([
            str(pg_bin() / "initdb"), "-D", str(data), "-U", "postgres", "--no-sync",
            "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
            "-E", "UTF8", "--locale=C",
        ]),
        check=True, capture_output=True,
    )
    return data


class Cluster:
    """One running PostgreSQL on 127.0.0.1:<free port>, socket in its own directory."""

    port: int
    sockdir: Path

    def __init__(self, template: Path | None, max_connections: int = 20,
                 superuser_reserved: int = 3, primary: Cluster | None = None) -> None:
        self.base = make_workdir("fe-pgc-")
        self.data = self.base / "data"
        if primary is not None:  # a streaming replica of ``primary``
            subprocess.run(
                _as_service_user([
                    str(pg_bin() / "pg_basebackup"), "-D", str(self.data), "-h",
                    str(primary.sockdir), "-p", str(primary.port), "-U", "postgres", "-R",
                    "-X", "stream", "--no-sync",
                ]),
                check=True, capture_output=True, timeout=60,
            )
        else:
            assert template is not None
            shutil.copytree(template, self.data, symlinks=True)
        self.data.chmod(0o700)
        self.sockdir = self.base
        self.port = free_port()
        self.log = self.base / "server.log"
        conf = self.data / "postgresql.conf"
        with conf.open("a") as f:
            f.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.sockdir}'\n"
                f"max_connections = {max_connections}\n"
                f"superuser_reserved_connections = {superuser_reserved}\n"
                "shared_preload_libraries = 'pg_stat_statements'\n"
                "pg_stat_statements.max = 5000\nfsync = off\n"
            )
        _own(self.base)

    def ctl(self, *args: str) -> None:
        subprocess.run(
            _as_service_user([str(pg_bin() / "pg_ctl"), "-D", str(self.data), "-l",
                              str(self.log), *args]),
            check=True, capture_output=True, timeout=60,
        )

    def start(self) -> None:
        self.ctl("-w", "-t", "30", "start")

    def stop(self) -> None:
        self.ctl("-w", "-t", "30", "-m", "fast", "stop")

    def restart(self) -> None:
        self.ctl("-w", "-t", "30", "-m", "fast", "restart")

    def pids(self) -> list[int]:
        """Postmaster and all its children."""
        master = int((self.data / "postmaster.pid").read_text().split()[0])
        out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True)
        return [master, *(int(p) for p in out.stdout.split())]

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        # The postmaster first: stopped, it forks no new backend. A child listed a moment
        # ago may have exited since (a backend whose client just left): nothing to signal.
        master, *children = self.pids()
        os.kill(master, signum)
        for pid in children:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def admin_dsn(self, dbname: str = "postgres") -> str:
        """Superuser over the unix socket (trust)."""
        return f"host={self.sockdir} port={self.port} dbname={dbname} user=postgres"

    def destroy(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                try:
                    self.resume()
                except (OSError, ValueError):
                    pass
                self.ctl("-w", "-t", "30", "-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.base, ignore_errors=True)


class Bouncer:
    """A PgBouncer in front of ``cluster``; admin user ``postgres`` (plain password)."""

    ADMIN_PASSWORD = "bouncer-Admin-pw"

    def __init__(self, cluster: Cluster, pool_size: int = 2, max_client_conn: int = 50,
                 auth_type: str = "plain") -> None:
        self.base = make_workdir("fe-pgb-")
        self.port = free_port()
        users = self.base / "users.txt"
        users.write_text(
            f'"postgres" "{self.ADMIN_PASSWORD}"\n"app" "app-pw"\n"plain" "plain-pw"\n'
        )
        self.ini = self.base / "pgbouncer.ini"
        self.ini.write_text(
            "[databases]\n"
            f"appdb = host={cluster.sockdir} port={cluster.port} dbname=postgres user=postgres\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            f"unix_socket_dir = {self.base}\n"
            f"auth_type = {auth_type}\nauth_file = {users}\n"
            "admin_users = postgres\nstats_users = app\n"
            f"pool_mode = session\ndefault_pool_size = {pool_size}\n"
            f"max_client_conn = {max_client_conn}\n"
            "ignore_startup_parameters = extra_float_digits\n"
            f"logfile = {self.base / 'pgbouncer.log'}\npidfile = {self.base / 'pgbouncer.pid'}\n"
        )
        _own(self.base)
        self.start()

    def start(self) -> None:
        # pgbouncer refuses root; -u makes it switch user itself (no runuser in between, so
        # terminate() reaches pgbouncer directly)
        as_user = ["-u", "postgres"] if os.geteuid() == 0 else []
        self.proc = subprocess.Popen(
            ["pgbouncer", *as_user, str(self.ini)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("pgbouncer did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
