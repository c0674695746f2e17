"""A private PostgreSQL cluster for benchmarks, pinned to the server CPU.

Usage::

    with postgres_cluster(workdir) as cluster:
        dsn = cluster.create_database("publish")   # postgres://postgres@127.0.0.1:PORT/publish
        ...                                         # DATABASE_URL=dsn for the product
        cluster.cpu_seconds()                       # CPU of every postgres process so far

Modelled on the test fixture (tests/fixtures/services.py, ``postgres_server``),
with three differences that matter for a measurement:

- Durable by default: ``fsync=on`` and ``synchronous_commit=on`` (the test
  fixture turns fsync off); every commit waits for its WAL flush, so a figure
  measured here is for committed, durable work. Pass ``settings`` to override.
- The postmaster is this process's direct child, started with
  ``preexec_fn=common.pin_to_server_cpu`` (not through ``pg_ctl``, which would
  fork it away), so it and every backend and background worker it forks run on
  the server CPU, and its pid is known.
- ``initdb`` runs as the ``postgres`` user when this process is root (initdb
  refuses root), in a short ``/tmp/bpg-*`` directory that user owns (the Unix
  socket path must stay under 107 bytes); the server's log goes to ``workdir``.

Needs Debian's ``postgresql`` package (the binaries under /usr/lib/postgresql/N/bin).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import BenchError, free_port, pin_to_server_cpu, wait_for

DURABLE_SETTINGS: dict[str, str] = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
}
"""What every cluster runs with unless ``settings`` says otherwise (PostgreSQL's
own defaults, spelled out so that a results file can show them)."""

_OWNER = "postgres"
_START_ATTEMPTS = 3


def postgres_bin_dir() -> Path:
    """The newest installed PostgreSQL's binaries (Debian: /usr/lib/postgresql/15/bin).

    Raises:
        BenchError: PostgreSQL is not installed.
    """
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda path: int(path.parents[1].name) if path.parents[1].name.isdigit() else 0,
    )
    if not candidates:
        raise BenchError("PostgreSQL is not installed (apt-get install -y postgresql)")
    return candidates[-1].parent


@dataclass
class PostgresCluster:
    """A running cluster: where it listens, its postmaster process, and its settings.

    Every database on it is reached as the ``postgres`` superuser without a
    password (``-A trust``) over TCP on 127.0.0.1.
    """

    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    socket_dir: Path
    log_path: Path
    settings: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"

    @property
    def pid(self) -> int:
        """The postmaster's pid; every other postgres process is its child."""
        return self.process.pid

    @property
    def admin_dsn(self) -> str:
        """The maintenance database, for CREATE DATABASE and statistics."""
        return f"postgresql://{_OWNER}@{self.host}:{self.port}/postgres"

    def dsn(self, name: str) -> str:
        """The ``DATABASE_URL`` of database ``name`` (in the form dj-database-url reads)."""
        return f"postgres://{_OWNER}@{self.host}:{self.port}/{name}"

    def create_database(self, name: str) -> str:
        """Create an empty database ``name`` (letters, digits, ``_``) and return its DSN."""
        import psycopg

        if not name.replace("_", "").isalnum() or not name.isascii():
            raise BenchError(f"database name {name!r}: use ASCII letters, digits and '_'")
        with psycopg.connect(self.admin_dsn, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def answers(self) -> bool:
        """Whether the cluster accepts a connection and runs a query."""
        import psycopg

        try:
            with psycopg.connect(self.admin_dsn, connect_timeout=2) as connection:
                connection.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def pids(self) -> list[int]:
        """The postmaster and its live children (backends, WAL writer, checkpointer...)."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            return [self.pid, *(int(pid) for pid in children.read_text().split())]
        except FileNotFoundError:
            return []

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the whole cluster since it started.

        The postmaster's own time, the time of the children it has already
        reaped (backends of closed connections: /proc's cutime and cstime), and
        the time of the children still running.
        """
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for pid in self.pids():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except FileNotFoundError:
                continue  # a backend that exited since the listing; the postmaster counts it
            fields = stat[stat.rindex(")") + 2 :].split()
            spent = int(fields[11]) + int(fields[12])
            if pid == self.pid:
                spent += int(fields[13]) + int(fields[14])
            total += spent / tick
        return total

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


def _owner_ids() -> tuple[int, int] | None:
    """The uid and gid to run PostgreSQL as: the postgres user when root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        owner = pwd.getpwnam(_OWNER)
    except KeyError:
        raise BenchError(
            f"running as root needs the {_OWNER!r} user (Debian's postgresql package)"
        ) from None
    return owner.pw_uid, owner.pw_gid


def _initdb(bin_dir: Path, data_dir: Path, ids: tuple[int, int] | None, log_path: Path) -> None:
    uid, gid = ids if ids is not None else (None, None)
    done = subprocess.run(
        # --no-sync: only initdb's own files skip fsync; the running cluster still syncs.
        [
            str(bin_dir / "initdb"),
            *("-D", str(data_dir), "-A", "trust", "-U", _OWNER, "-E", "UTF8"),
            *("--locale", "C", "--no-sync", "--no-instructions"),
        ],
        cwd=data_dir.parent,
        user=uid,
        group=gid,
        extra_groups=[] if ids is not None else None,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    log_path.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise BenchError(f"initdb failed:\n{done.stdout}{done.stderr}")


def _start(
    bin_dir: Path,
    base_dir: Path,
    log_path: Path,
    ids: tuple[int, int] | None,
    settings: dict[str, str],
    *,
    pinned: bool,
) -> PostgresCluster:
    uid, gid = ids if ids is not None else (None, None)
    data_dir = base_dir / "data"
    for _attempt in range(_START_ATTEMPTS):
        port = free_port()
        options = {"listen_addresses": "127.0.0.1", **settings}
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [
                    str(bin_dir / "postgres"),
                    *("-D", str(data_dir), "-p", str(port), "-k", str(base_dir)),
                    *(arg for key, value in options.items() for arg in ("-c", f"{key}={value}")),
                ],
                cwd=base_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                user=uid,
                group=gid,
                extra_groups=[] if ids is not None else None,
                preexec_fn=pin_to_server_cpu if pinned else None,
            )
        cluster = PostgresCluster(
            process=process,
            port=port,
            data_dir=data_dir,
            socket_dir=base_dir,
            log_path=log_path,
            settings=options,
        )

        def ready(cluster: PostgresCluster = cluster) -> bool:
            return cluster.process.poll() is not None or cluster.answers()

        try:
            wait_for(ready, timeout=60, what="PostgreSQL to accept connections")
        except BaseException:
            _stop(process)
            raise
        if process.poll() is None:
            return cluster
        # Most likely another process took the free port first; try another one.
    raise BenchError(f"PostgreSQL did not start:\n{log_path.read_text(errors='replace')[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        # SIGINT is PostgreSQL's "fast" shutdown: roll back sessions, checkpoint, exit.
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def postgres_cluster(
    workdir: Path, *, settings: Mapping[str, str] | None = None, pinned: bool = True
) -> Iterator[PostgresCluster]:
    """Start a private, durable PostgreSQL cluster for the duration of the block.

    Args:
        workdir: Where ``postgres.log`` goes (initdb's output and the server's log);
            it is left there after the cluster stops. The data directory itself
            lives in a short ``/tmp/bpg-*`` directory that is removed at the end.
        settings: Server settings (``-c name=value``) on top of DURABLE_SETTINGS,
            e.g. ``{"max_connections": "300"}``; ``listen_addresses`` is always
            127.0.0.1.
        pinned: Whether the cluster runs on the server CPU beside the server under
            test (benchmarks), or wherever the kernel puts it (the test suites).

    Yields:
        The running cluster; it is stopped (fast shutdown) and deleted on exit.

    Raises:
        BenchError: PostgreSQL is missing, or initdb or the server failed (with its log).
    """
    bin_dir = postgres_bin_dir()
    ids = _owner_ids()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "postgres.log"
    base_dir = Path(tempfile.mkdtemp(prefix="bpg-", dir="/tmp"))
    try:
        if ids is not None:
            os.chown(base_dir, *ids)
        _initdb(bin_dir, base_dir / "data", ids, log_path)
        cluster = _start(
            bin_dir,
            base_dir,
            log_path,
            ids,
            {**DURABLE_SETTINGS, **(settings or {})},
            pinned=pinned,
        )
        try:
            yield cluster
        finally:
            _stop(cluster.process)
    finally:
        shutil.rmtree(base_dir, ignore_errors=True)
