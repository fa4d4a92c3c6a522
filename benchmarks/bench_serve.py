"""Benchmark: the decision service vs ``mlflow models serve`` on the same credit model, over loopback.

    .venv/bin/python benchmarks/bench_serve.py [--duration 60] [--clients 1 16] [--sync FULL NORMAL]

Needs the pipeline's outputs (``dvc repro``: mlflow.db, data/online) and wrk (Debian: ``apt-get install wrk``).
Each server is pinned to CPU 0 and wrk to CPU 1 (``taskset``); every run is bounded by ``--duration`` seconds
and ``--max-requests`` answers. Ours: ``POST /v1/decisions`` - feature-store lookup, the merge with the
application's fields, PD, SHAP reason codes, the first line from the three limit models, and the durable
decision log (SQLite WAL, ``synchronous`` FULL = an fsync per commit group, NORMAL = survives a process crash,
not a power cut) - with a fresh idempotency key per request. The peer: the same registered credit booster
behind ``mlflow models serve --env-manager local`` (MLflow's scoring server: FastAPI/uvicorn, pyfunc), sent the
same customers' model inputs (``dataframe_split``): the PD only. Reported: p50/p95/p99 latency (wrk, client
side), throughput, non-200 answers and socket errors, the decision-log rows added vs the 200s counted, the
servers' peak RSS, and the p99 ratio peer/ours at one client.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from cardlab.serve.harness import ServerProcess, free_port, pipeline_versions

LUA = r"""
local bodies = {%(bodies)s}
local n = #bodies
local path = "%(path)s"
local run = "%(run)s"
local max_requests = %(max_requests)d
local keyed = %(keyed)s
local threads = {}
local next_id = 0
counter = 0
ok = 0
bad = 0
tid = 0

setup = function(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
  table.insert(threads, thread)
end

request = function()
  counter = counter + 1
  local headers = {["Content-Type"] = "application/json"}
  if keyed then headers["Idempotency-Key"] = string.format("%%s-%%d-%%d", run, tid, counter) end
  return wrk.format("POST", path, headers, bodies[(counter %% n) + 1])
end

response = function(status, headers, body)
  if status == 200 then ok = ok + 1 else bad = bad + 1 end
  if ok + bad >= max_requests then wrk.thread:stop() end
end

done = function(summary, latency, requests)
  local t_ok, t_bad = 0, 0
  for _, t in ipairs(threads) do
    t_ok = t_ok + t:get("ok")
    t_bad = t_bad + t:get("bad")
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %%d, "duration_s": %%.3f, "ok": %%d, "non200": %%d, "socket_errors": %%d, ' ..
    '"p50_ms": %%.3f, "p95_ms": %%.3f, "p99_ms": %%.3f, "max_ms": %%.3f, "mean_ms": %%.3f}\n',
    summary.requests, summary.duration / 1e6, t_ok, t_bad, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1e3, latency:percentile(95) / 1e3, latency:percentile(99) / 1e3,
    latency.max / 1e3, latency.mean / 1e3))
end
"""


def _lua_string(s: str) -> str:
    return json.dumps(s)  # a JSON string literal is a valid Lua string literal for ASCII content


def run_wrk(
    url: str, path: str, bodies: list[str], clients: int, duration: int, max_requests: int, keyed: bool
):
    script = LUA % {
        "bodies": ",\n".join(_lua_string(b) for b in bodies),
        "path": path,
        "run": uuid.uuid4().hex[:8],
        "max_requests": max_requests,
        "keyed": "true" if keyed else "false",
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{clients}", f"-d{duration}s", "--timeout", "10s"]
        proc = subprocess.run(
            [*cmd, "-s", f.name, url], capture_output=True, text=True, timeout=duration + 120
        )
    finally:
        os.unlink(f.name)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("WRK_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    out = json.loads(line.removeprefix("WRK_RESULT "))
    out["throughput_rps"] = out["requests"] / out["duration_s"]
    return out


def _tree_hwm_mib(pid: int) -> float:
    """Peak RSS (VmHWM) summed over ``pid`` and its descendants, MiB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1024


def _log_rows(db: Path) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])
    finally:
        con.close()


def _server_200s(url: str) -> int:
    """Decisions the server answered with 200 (its own Prometheus counter)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    key = 'cardlab_http_requests_total{method="POST",route="/v1/decisions",status="200"} '
    return next((int(float(x[len(key) :])) for x in text.splitlines() if x.startswith(key)), 0)


def _histograms(url: str) -> dict[str, list[float]]:
    """Server-side [sum seconds, count] per decision stage and for whole /v1/decisions requests."""
    out: dict[str, list[float]] = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("cardlab_decision_stage_seconds_"):
            key = line.split('stage="')[1].split('"')[0]
        elif line.startswith("cardlab_http_request_duration_seconds_") and 'route="/v1/decisions"' in line:
            key = "request (server side)"
        else:
            continue
        kind = 0 if "_sum{" in line else 1 if "_count{" in line else None
        if kind is not None:
            out.setdefault(key, [0.0, 0.0])[kind] = float(line.rsplit(" ", 1)[1])
    return out


def _budget_ms(before: dict, after: dict) -> dict[str, float]:
    """Mean ms per request of each stage between two scrapes (log: per commit group)."""
    out = {}
    for k, (s1, c1) in after.items():
        s0, c0 = before.get(k, [0.0, 0.0])
        if c1 > c0:
            out[k] = round(1e3 * (s1 - s0) / (c1 - c0), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--root", type=Path, default=Path("."), help="the pipeline's tree (mlflow.db, data/online)"
    )
    ap.add_argument("--duration", type=int, default=60, help="seconds per run")
    ap.add_argument("--max-requests", type=int, default=1_000_000, help="answers per run at most")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--sync", nargs="+", default=["FULL"], choices=["FULL", "NORMAL"])
    ap.add_argument("--customers", type=int, default=500, help="distinct applications cycled through")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk (Debian)")
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs 2 CPUs: the server on CPU 0, wrk on CPU 1")
    root = args.root.resolve()
    versions = pipeline_versions(root)
    tmp = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    results: list[dict] = []
    bodies: list[str] = []
    peer_bodies: list[str] = []
    try:
        for sync in args.sync:
            db = tmp / f"decisions-{sync}.db"
            server = ServerProcess(
                root, log_url=f"sqlite:///{db}", extra=["--sqlite-sync", sync], cpu=0, **versions
            ).start()
            try:
                if not bodies:  # the applications, and the model inputs the peer gets for them
                    store = sqlite3.connect(root / "data" / "online" / "features.sqlite")
                    today = int(store.execute("SELECT value FROM meta WHERE key = 'today'").fetchone()[0])
                    ids = [
                        r[0]
                        for r in store.execute(
                            "SELECT customer_id FROM rows WHERE t = ? LIMIT ?", (today, args.customers)
                        )
                    ]
                    store.close()
                    # applications dated in the store's own "today" month (not a date of some other world)
                    from cardlab.serve.store import FeatureStore

                    online = FeatureStore(root / "data" / "online")
                    day = online.month_start(online.today).isoformat()
                    with httpx.Client(base_url=server.url, timeout=30) as c:
                        for i, cid in enumerate(ids):
                            app = {
                                "customer_id": cid,
                                "application_date": day,
                                "legacy_score": 520 + (i * 7) % 300,
                            }
                            bodies.append(json.dumps(app))
                            doc = c.post("/v1/decisions", json={**app, "return_features": True}).json()
                            feats = doc["features"]["credit"]
                            split = {"columns": list(feats), "data": [[feats[k] for k in feats]]}
                            peer_bodies.append(json.dumps({"dataframe_split": split}))
                for clients in args.clients:
                    before, served = _log_rows(db), _server_200s(server.url)
                    hist = _histograms(server.url)
                    r = run_wrk(
                        server.url, "/v1/decisions", bodies, clients, args.duration, args.max_requests, True
                    )
                    time.sleep(0.5)  # requests in flight when wrk stopped finish on the server
                    r.update(
                        server=f"cardlab serve (log {sync})",
                        clients=clients,
                        log_rows=_log_rows(db) - before,
                        server_200s=_server_200s(server.url) - served,
                        budget_ms=_budget_ms(hist, _histograms(server.url)),
                    )
                    results.append(r)
                    print(json.dumps(r), flush=True)
                for r in results:
                    if r["server"].endswith(f"{sync})"):
                        r["peak_rss_mib"] = round(_tree_hwm_mib(server.proc.pid), 1)
            finally:
                server.stop()
        port = free_port()
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        }
        cmd = ["taskset", "-c", "0", str(Path(sys.executable).parent / "mlflow"), "models", "serve",
               "-m", f"models:/cardlab-credit/{versions['credit']}", "--env-manager", "local",
               "-h", "127.0.0.1", "-p", str(port), "-w", "1"]  # fmt: skip
        peer = subprocess.Popen(
            cmd,
            env=env,
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 180
            while True:
                try:
                    if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or peer.poll() is not None:
                    raise RuntimeError("mlflow models serve did not start")
                time.sleep(0.5)
            for body in peer_bodies[:50]:  # warm up
                httpx.post(f"{url}/invocations", content=body, headers={"Content-Type": "application/json"})
            for clients in args.clients:
                r = run_wrk(
                    url, "/invocations", peer_bodies, clients, args.duration, args.max_requests, False
                )
                r.update(server="mlflow models serve (PD only)", clients=clients, log_rows=None)
                results.append(r)
                print(json.dumps(r), flush=True)
            for r in results:
                if r["server"].startswith("mlflow"):
                    r["peak_rss_mib"] = round(_tree_hwm_mib(peer.pid), 1)
        finally:
            os.killpg(peer.pid, 15)
            peer.wait(timeout=30)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # wrk counts the answers it read; the server also finished the requests in flight when wrk stopped, so the
    # log is reconciled with the server's own count of 200s (which exceeds wrk's by at most the clients)
    print(
        "\n| server | clients | p50 ms | p95 ms | p99 ms | req/s | non-200 + socket errors "
        "| log rows / server 200s / wrk 200s | peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        rows = "-" if r["log_rows"] is None else f"{r['log_rows']} / {r['server_200s']} / {r['ok']}"
        print(
            f"| {r['server']} | {r['clients']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['throughput_rps']:.0f} | {r['non200'] + r['socket_errors']} | {rows} | {r.get('peak_rss_mib', '-')} |"
        )
    print(
        "\nlatency budget, mean ms per decision on the server (log: per commit group, shared by its decisions):"
    )
    for r in results:
        if r["log_rows"] is not None:
            print(f"  {r['server']}, {r['clients']} client(s): {r['budget_ms']}")
    peer1 = next((r for r in results if r["server"].startswith("mlflow") and r["clients"] == 1), None)
    for r in results:
        if peer1 and r["clients"] == 1 and not r["server"].startswith("mlflow"):
            print(f"single-client p99 ratio peer/ours ({r['server']}): {peer1['p99_ms'] / r['p99_ms']:.2f}x")
    bad = [
        r
        for r in results
        if r["non200"] + r["socket_errors"]
        or (
            r["log_rows"] is not None
            and not (
                r["log_rows"] == r["server_200s"] and r["ok"] <= r["server_200s"] <= r["ok"] + r["clients"]
            )
        )
    ]
    if bad:
        sys.exit(f"errors or lost decisions in {len(bad)} run(s)")


if __name__ == "__main__":
    main()
