"""Running the service as a real process: the tests (skew, crash) and benchmarks/bench_serve.py share this.

:class:`ServerProcess` starts ``cardlab serve`` on a free loopback port of a given range, waits for
``/readyz``, and stops it (SIGTERM) or kills it (SIGKILL) by its own pid. :func:`pipeline_versions` names
the registered versions whose runs produced the pipeline's current ``experiments/<task>/`` outputs, so a
comparison with the batch serves exactly the batch's models.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from cardlab.scale.services import PostgresServer

PORTS = range(18000, 18100)  # this project's loopback range for services under test


def free_port(ports: range = PORTS) -> int:
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1} on 127.0.0.1")


def pipeline_versions(root: Path) -> dict[str, str]:
    """{"credit": "7", "limit": "9"}: the newest registered version of each task that holds the model behind
    the batch outputs: its ``model_digest`` tag equals the digest in ``experiments/<task>/.mlflow_run``
    (evaluate registers a byte-identical retrain once, under the run that first logged it, so the run id of
    a later, identical train need not match)."""
    from cardlab.serve.registry import REGISTERED, _client

    uri = f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"
    client = _client(uri)
    out = {}
    for task, name in REGISTERED.items():
        run_file = Path(root) / "experiments" / task / ".mlflow_run"
        if not run_file.exists():
            raise FileNotFoundError(f"{run_file} is missing: run the pipeline (dvc repro) in {root}")
        digest = json.loads(run_file.read_text())["model_digest"]
        versions = [
            int(v.version)
            for v in client.search_model_versions(f"name='{name}'")
            if v.tags.get("model_digest") == digest
        ]
        if not versions:
            raise LookupError(
                f"no version of {name} holds the model with digest {digest[:12]}… that {run_file} describes "
                f"(re-run `dvc repro evaluate@{task}`)"
            )
        out[task] = str(max(versions))
    return out


class ServerProcess:
    """``cardlab serve`` in its own process group, on 127.0.0.1."""

    def __init__(
        self,
        root: Path,
        *,
        log_url: str,
        credit: str,
        limit: str,
        port: int | None = None,
        extra: list[str] | None = None,
        cpu: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            str(Path(sys.executable).parent / "cardlab"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--credit",
            credit,
            "--limit",
            limit,
            "--store",
            str(self.root / "data" / "online"),
            "--log",
            log_url,
            *(extra or []),
        ]
        if cpu is not None:
            cmd = ["taskset", "-c", str(cpu), *cmd]
        self.cmd = cmd
        self.env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": f"sqlite:///{self.root.resolve() / 'mlflow.db'}",
            "CARDLAB_ROOT": str(self.root.resolve()),
            **(env or {}),
        }
        self.proc: subprocess.Popen | None = None
        self.log_path = self.root / f".serve-{self.port}.log"

    def start(self, timeout: float = 120.0) -> ServerProcess:
        self._out = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=self.root,
            env=self.env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cardlab serve exited ({self.proc.returncode}):\n{self.output()[-3000:]}")
            try:
                r = httpx.get(f"{self.url}/readyz", timeout=2.0)
                if r.status_code == 200:
                    return self
                last = r.text
                if "Error" in (r.json().get("reason") or ""):
                    raise RuntimeError(f"the service will not become ready: {last}")
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"cardlab serve not ready after {timeout:.0f} s: {last}\n{self.output()[-3000:]}")

    def output(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs (the crash test)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self._close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self._close()

    def _close(self) -> None:
        out = getattr(self, "_out", None)
        if out is not None and not out.closed:
            out.close()
        if self.log_path.exists():
            self.log_path.unlink()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class PostgresCluster(PostgresServer):
    """A throwaway PostgreSQL cluster on a loopback port of :data:`PORTS`, for the PostgreSQL decision-log
    path: :class:`cardlab.scale.services.PostgresServer` (the one PostgreSQL launcher of the project) in a
    temporary folder that :meth:`stop` removes."""

    def __init__(self, port: int | None = None) -> None:
        import tempfile

        port = port or free_port()
        super().__init__(Path(tempfile.mkdtemp(prefix="cardlab-pg-", dir="/tmp")), port)

    def stop(self, mode: str = "fast") -> None:
        try:
            super().stop(mode)
        finally:
            self.remove()

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class ThreadedServer:
    """uvicorn serving an app object in a thread of this process (lifespan on), on a free loopback port."""

    def __init__(self, app) -> None:
        import threading

        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise TimeoutError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
