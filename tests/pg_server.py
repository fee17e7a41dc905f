"""A throwaway PostgreSQL server on 127.0.0.1 for tests and benchmarks (initdb + pg_ctl in a temp dir)."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

PASSWORD = "pg-test-secret"  # the superuser's password: tests check it never appears in a message
USER = "postgres"
DATABASE = "sync_job_test"
NO_SERVER_REASON = (
    "no PostgreSQL server binary (initdb, pg_ctl, postgres) on PATH or in /usr/lib/postgresql/*/bin: "
    "install Debian's `postgresql` package"
)


def find_bin_dir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres: PATH first, then the newest Debian install."""
    names = ("initdb", "pg_ctl", "postgres")
    on_path = [shutil.which(n) for n in names]
    if all(on_path):
        # Debian symlinks the binaries into /usr/local/bin; they must run from their real folder.
        folders = {Path(p).resolve().parent for p in on_path if p}
        if len(folders) == 1:
            return folders.pop()
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name or 0))
    for folder in reversed(candidates):
        if all((Path(folder) / n).exists() for n in names):
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _server_user() -> pwd.struct_passwd | None:
    """The OS user to run the server as: None when we are not root (initdb refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a `postgres` nor a `nobody` OS user exists")


class PgServer:
    """Context manager: initdb into a temp dir, start on a free port, create a database, stop and delete on exit.

    `durable=False` turns fsync off (tests); the benchmark keeps PostgreSQL's default durability.
    """

    def __init__(self, bin_dir: Path, *, durable: bool = False) -> None:
        self.bin_dir = bin_dir
        self.durable = durable
        self.port = 0
        self.root = Path()
        self._user = _server_user()

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={USER} password={PASSWORD} dbname={DATABASE} connect_timeout=10"

    def dsn_for(self, **changes: str | int) -> str:
        parts = {"host": "127.0.0.1", "port": self.port, "user": USER, "password": PASSWORD, "dbname": DATABASE}
        parts.update(changes)
        return " ".join(f"{k}={v}" for k, v in parts.items()) + " connect_timeout=5"

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self._user is not None:
            ids = [f"--reuid={self._user.pw_uid}", f"--regid={self._user.pw_gid}", "--clear-groups"]
            command = ["setpriv", *ids, *command]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "HOME": str(self.root)}
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr.strip()[-2000:]}\n{tail}")

    def __enter__(self) -> PgServer:
        # /tmp, not pytest's 0700 tmp dirs: the server's OS user must be able to reach the data folder.
        self.root = Path(tempfile.mkdtemp(prefix="sync-job-pg-"))
        (self.root / "sock").mkdir()
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if self._user is not None:
            for path in (self.root, self.root / "sock", pwfile):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        try:
            self._run(
                "initdb", "-D", str(self.root / "data"), "-U", USER, "--pwfile", str(pwfile),
                "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-instructions",
            )  # fmt: skip
            pwfile.unlink()
            options = f"-c listen_addresses=127.0.0.1 -k {self.root / 'sock'}"
            if not self.durable:
                options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            for attempt in range(3):  # another process may grab the free port before the server binds it
                self.port = _free_port()
                try:
                    self._run(
                        "pg_ctl", "-D", str(self.root / "data"), "-l", str(self.root / "server.log"), "-w",
                        "-t", "60", "-o", f"{options} -p {self.port}", "start",
                    )  # fmt: skip
                    break
                except RuntimeError:
                    if attempt == 2:
                        raise
            self._run("createdb", "-h", str(self.root / "sock"), "-p", str(self.port), "-U", USER, DATABASE)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if (self.root / "data" / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):
                self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
