"""Shared services on 127.0.0.1 for a team's cardlab: PostgreSQL, an S3-compatible store, an MLflow server.

``make services`` (``python -m cardlab.scale.services start``) starts, from Debian and PyPI packages only:

- **PostgreSQL** (Debian's ``postgresql``): ``initdb`` into ``.services/postgres`` on first start, then
  ``pg_ctl start`` on a non-default port, TCP on 127.0.0.1 only; databases ``mlflow`` and ``optuna``;
- **an S3-compatible store**: moto's server mode (``moto.server``), buckets ``cardlab-mlflow`` (MLflow
  artifacts) and ``cardlab-dvc`` (the DVC remote). moto keeps objects in memory: the store lives as long as
  its process (enough for a team's session and for CI; docs/scale.md names durable stores);
- **an MLflow tracking server** with the PostgreSQL backend (``mlflow db upgrade`` run explicitly before it
  starts) and ``--serve-artifacts`` to the S3 bucket, so clients need no S3 credentials.

It writes one env file, ``.services/env`` (``KEY=value`` lines that both ``make`` and ``source`` read):
``MLFLOW_TRACKING_URI`` switches every stage to the server, ``CARDLAB_OPTUNA_STORAGE`` is the URL for
``tune.storage``, and a DVC remote ``services`` (in ``.dvc/config.local``) points at the store.
``make services-stop`` stops each process by the pid it recorded (its whole process group), and PostgreSQL
with ``pg_ctl stop``. :class:`PostgresServer` is also the throwaway cluster of the tests
(``cardlab.serve.harness.PostgresCluster``).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Self

STATE = Path(".services")
ENV_FILE = "env"
# non-default ports (PostgreSQL 5432, MLflow 5000, S3 servers 9000 stay free for a user's own)
PORTS = {"postgres": 17432, "s3": 17490, "mlflow": 17450}
BUCKETS = ("cardlab-mlflow", "cardlab-dvc")
S3_KEY = ("cardlab", "cardlab-local-store")  # moto accepts any key; the values only have to agree
DVC_REMOTE = "services"


class ServiceError(RuntimeError):
    """A service would not start or stop; the message names it and its log."""


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait(check, what: str, log: Path | None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as err:  # noqa: BLE001 - any failure means "not ready yet"
            last = err
        time.sleep(0.25)
    tail = log.read_text()[-2000:] if log and log.exists() else ""
    raise ServiceError(f"{what} not ready after {timeout:.0f} s ({last}); log {log}:\n{tail}")


class PostgresServer:
    """Debian's PostgreSQL in ``data_dir`` on 127.0.0.1:``port`` (TCP only, trust auth for user ``cardlab``).

    ``initdb`` runs once (a data folder that exists is reused); as root every command runs as the
    ``postgres`` user (initdb refuses root)."""

    def __init__(self, data_dir: Path, port: int) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
        if not bins:
            raise FileNotFoundError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
        self.bindir = Path(bins[-1]).parent
        self.dir = Path(data_dir).resolve()
        self.home = self._home(self.dir)
        self.data = self.home / "data"
        self.log = self.home / "server.log"
        self.port = port
        self.url = f"postgresql://cardlab@127.0.0.1:{port}/postgres"

    @staticmethod
    def _home(folder: Path) -> Path:
        """Where the cluster lives. As root the server runs as ``postgres``, which cannot enter a folder under a
        private (0700, root-owned) parent such as a ``mktemp -d`` clone or pytest's tmp_path; the cluster then
        lives in ``$TMPDIR/cardlab-pg-<hash of folder>``, owned by ``postgres`` and found again from the
        folder's path (stop and restart need no other state)."""
        if os.geteuid() != 0:
            return folder
        key = hashlib.sha1(str(folder).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"cardlab-pg-{key}"

    def sqlalchemy_url(self, database: str) -> str:
        return f"postgresql+psycopg://cardlab@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ServiceError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")

    def init(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.home, "postgres", "postgres")
            self.home.chmod(0o700)
        if not (self.data / "PG_VERSION").exists():
            self._run(
                "initdb", "-D", str(self.data), "-A", "trust", "-U", "cardlab", "--no-sync", "-E", "UTF8"
            )

    def start(self) -> Self:
        self.init()
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
            "-c fsync=on -c synchronous_commit=on -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.log), "-w", "-t", "60", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        """Delete the cluster's files (stop it first): its folder and, as root, its home under TMPDIR."""
        shutil.rmtree(self.home, ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def restart(self) -> None:
        """Stop (fast: open connections are cut) and start again, as an operator's restart would."""
        self.stop()
        self.start()

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')


def _spawn(cmd: list[str], log: Path, env: dict[str, str]) -> int:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=log.parent
        )
    return proc.pid


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback URL we built
        return r.status == 200


def s3_env(endpoint: str) -> dict[str, str]:
    """What boto3 (MLflow's artifact store, DVC's s3fs) needs to reach the store."""
    return {
        "AWS_ACCESS_KEY_ID": S3_KEY[0],
        "AWS_SECRET_ACCESS_KEY": S3_KEY[1],
        "AWS_DEFAULT_REGION": "us-east-1",
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
    }


@dataclass
class Services:
    """The running services of one state folder (what ``.services/env`` says)."""

    state: Path
    env: dict[str, str]

    @classmethod
    def read(cls, state: Path = STATE) -> Services | None:
        path = Path(state) / ENV_FILE
        if not path.exists():
            return None
        env = {}
        for line in path.read_text().splitlines():
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                env[k] = v
        return cls(Path(state), env)

    @property
    def postgres(self) -> PostgresServer:
        return PostgresServer(self.state / "postgres", int(self.env["CARDLAB_POSTGRES_PORT"]))


def start(state: Path = STATE, ports: dict[str, int] | None = None, repo: Path | None = None) -> Services:
    """Start PostgreSQL, the S3 store and the MLflow server (each once); write ``state/env``."""
    ports = {**PORTS, **(ports or {})}
    state = Path(state).resolve()
    state.mkdir(parents=True, exist_ok=True)
    if Services.read(state) is not None:
        raise ServiceError(f"{state / ENV_FILE} exists: services already run (`make services-stop` first)")
    for name, port in ports.items():
        if not port_free(port):
            raise ServiceError(
                f"port {port} ({name}) on 127.0.0.1 is taken; stop what runs there or choose another "
                f"(make services {name.upper()}_PORT=...)"
            )
    pids: dict[str, int] = {}
    try:
        pg = PostgresServer(state / "postgres", ports["postgres"]).start()
        for db in ("mlflow", "optuna"):
            pg.create_database(db)

        s3 = f"http://127.0.0.1:{ports['s3']}"
        base_env = {**os.environ, **s3_env(s3)}
        pids["s3"] = _spawn(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(ports["s3"])],
            state / "s3.log",
            base_env,
        )
        (state / "s3.pid").write_text(str(pids["s3"]))
        _wait(lambda: _http_ok(f"{s3}/moto-api/"), "the S3 store (moto)", state / "s3.log")
        import boto3

        client = boto3.client(
            "s3", endpoint_url=s3, aws_access_key_id=S3_KEY[0], aws_secret_access_key=S3_KEY[1]
        )
        for bucket in BUCKETS:
            client.create_bucket(Bucket=bucket)

        backend = pg.sqlalchemy_url("mlflow")
        mlflow = str(Path(sys.executable).parent / "mlflow")
        upgrade = subprocess.run(
            [mlflow, "db", "upgrade", backend], capture_output=True, text=True, env=base_env
        )
        if upgrade.returncode != 0:
            raise ServiceError(f"mlflow db upgrade {backend} failed:\n{upgrade.stderr[-2000:]}")
        pids["mlflow"] = _spawn(
            [
                mlflow,
                "server",
                "--backend-store-uri",
                backend,
                "--serve-artifacts",
                "--artifacts-destination",
                f"s3://{BUCKETS[0]}/artifacts",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports["mlflow"]),
                "--workers",
                "1",
            ],
            state / "mlflow.log",
            base_env,
        )
        (state / "mlflow.pid").write_text(str(pids["mlflow"]))
        tracking = f"http://127.0.0.1:{ports['mlflow']}"
        _wait(lambda: _http_ok(f"{tracking}/health"), "the MLflow server", state / "mlflow.log", 120)
    except BaseException:
        _stop_state(state)
        raise
    env = {
        "CARDLAB_SERVICES_DIR": str(state),
        "CARDLAB_POSTGRES_PORT": str(ports["postgres"]),
        "CARDLAB_POSTGRES_URL": pg.url,
        "CARDLAB_OPTUNA_STORAGE": pg.sqlalchemy_url("optuna"),
        "MLFLOW_TRACKING_URI": tracking,
        "CARDLAB_S3_ENDPOINT": s3,
        "CARDLAB_DVC_REMOTE": DVC_REMOTE,
        "AWS_ACCESS_KEY_ID": S3_KEY[0],
        "AWS_SECRET_ACCESS_KEY": S3_KEY[1],
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    lines = [
        "# written by `make services` (cardlab.scale.services); `set -a; . .services/env; set +a` points a",
        "# shell at them; `make services-stop` stops them and removes this file",
        *(f"{k}={v}" for k, v in env.items()),
    ]
    (state / ENV_FILE).write_text("\n".join(lines) + "\n")
    if repo is not None and (Path(repo) / ".dvc").is_dir():
        configure_dvc_remote(Path(repo), s3)
    return Services(state, env)


def configure_dvc_remote(repo: Path, endpoint: str) -> None:
    """A DVC remote ``services`` on the store, in ``.dvc/config.local`` (never committed)."""
    dvc = str(Path(sys.executable).parent / "dvc")
    for args in (
        ["remote", "add", "--local", "-f", DVC_REMOTE, f"s3://{BUCKETS[1]}/store"],
        ["remote", "modify", "--local", DVC_REMOTE, "endpointurl", endpoint],
        ["remote", "modify", "--local", DVC_REMOTE, "access_key_id", S3_KEY[0]],
        ["remote", "modify", "--local", DVC_REMOTE, "secret_access_key", S3_KEY[1]],
    ):
        proc = subprocess.run([dvc, *args], cwd=repo, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ServiceError(f"dvc {' '.join(args[:3])} failed in {repo}: {proc.stderr.strip()}")


def _kill_group(pid: int, timeout: float = 20.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _stop_state(state: Path) -> list[str]:
    stopped = []
    for name in ("mlflow", "s3"):
        pid_file = state / f"{name}.pid"
        if pid_file.exists():
            _kill_group(int(pid_file.read_text()))
            pid_file.unlink()
            stopped.append(name)
    pg = PostgresServer(state / "postgres", 0)
    if (pg.data / "postmaster.pid").exists():  # pg_ctl stops the postmaster by the pid in that file
        pg.stop()
        stopped.append("postgres")
    (state / ENV_FILE).unlink(missing_ok=True)
    return stopped


def stop(state: Path = STATE) -> list[str]:
    """Stop what ``start`` started in ``state`` (by recorded pid; PostgreSQL by pg_ctl); remove the env file."""
    return _stop_state(Path(state).resolve())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cardlab.scale.services", description=__doc__.split("\n")[0])
    ap.add_argument("action", choices=["start", "stop", "status"])
    ap.add_argument("--dir", type=Path, default=STATE, help="state folder (data, logs, pids, env file)")
    for name, port in PORTS.items():
        ap.add_argument(f"--{name}-port", type=int, default=port)
    args = ap.parse_args(argv)
    if args.action == "start":
        ports = {"postgres": args.postgres_port, "s3": args.s3_port, "mlflow": args.mlflow_port}
        try:
            svc = start(args.dir, ports, repo=Path.cwd())
        except (ServiceError, FileNotFoundError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"services running; env file {args.dir / ENV_FILE}:")
        print(json.dumps(svc.env, indent=2))
    elif args.action == "stop":
        print("stopped: " + (", ".join(stop(args.dir)) or "nothing was running"))
    else:
        found = Services.read(args.dir)
        print(json.dumps(found.env, indent=2) if found else "no services (run `make services`)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
