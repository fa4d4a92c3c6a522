"""Review-readiness: a reviewer opening the credit model's MLflow run in a browser sees the key metrics, and
the self-contained model report is served by the tracking server's artifact endpoint.

Slow (starts ``mlflow server`` and headless Chromium). Skipped only when Chromium is absent (CI installs it).
The screenshot is kept at ``experiments/credit/mlflow_ui.png`` for the README / reviewers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = next(
    (
        p
        for p in (
            os.environ.get("CHROMIUM"),
            shutil.which("chromium"),
            "/usr/bin/chromium",
            shutil.which("chromium-browser"),
            shutil.which("google-chrome"),
        )
        if p and Path(p).exists()
    ),
    None,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None, reason="headless Chromium not installed (apt-get install chromium); CI installs it"
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 10.0) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (local test server)
        return r.status, r.read().decode("utf-8", errors="replace")


def _chromium(url: str, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp / 'chrome-profile'}",
        "--window-size=1400,1000",
        "--virtual-time-budget=15000",
        *extra,
        url,
    ]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def credit_run(tmp_path_factory):
    """A credit model run in a fresh store: training run with the logged booster, evaluate metrics, explain."""
    root = tmp_path_factory.mktemp("mlflow_ui")
    with pytest.MonkeyPatch.context() as mp:  # undone even when the fixture fails
        mp.setenv("CARDLAB_ROOT", str(root))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        from cardlab import tracking
        from cardlab.config import parse_params
        from cardlab.explain import run as RUN
        from cardlab.explain import synthetic
        from cardlab.modeling import metrics as M
        from cardlab.modeling.workflow import load_model

        params = parse_params(
            {"explain": {"bootstrap_refits": 1, "stability_rows": 100, "global_sample": 800}}
        )
        paths = synthetic.build(root, n=4000, rounds=40)
        out = paths["out"]
        booster, features, _ = load_model(out)
        snaps = pd.read_parquet(paths["features_root"] / "credit")
        oot = snaps[(snaps["split"] == "oot") & snaps["label"].notna()]
        pd_oot = booster.inplace_predict(oot[features].astype("float32"))
        metrics = {
            "oot_auc": round(float(M.auc(oot["label"].astype(int).to_numpy(), pd_oot)), 6),
            "oot_n": len(oot),
        }
        (out / "metrics.json").write_text(json.dumps(metrics))
        with tracking.stage_run(
            experiment_name="cardlab-credit",
            run_name="credit-model",
            description="synthetic credit model for the UI test",
            stage="train@credit",
            params_hash="test",
            tags={"task": "credit"},
        ) as run:
            example = pd.DataFrame(np.zeros((5, len(features)), dtype="float32"), columns=features)
            model_uri = tracking.log_xgboost_model(booster, example)
            tracking.log_metrics(metrics)
            (out / ".mlflow_run").write_text(json.dumps({"run_id": run.info.run_id, "model_uri": model_uri}))
        RUN.explain(params, "credit", paths["features_root"], paths["oracle"], out)
        import mlflow

        mlflow.set_tracking_uri(None)
        yield {
            "root": root,
            "run_id": run.info.run_id,
            "experiment_id": run.info.experiment_id,
            "metrics": metrics,
        }


@pytest.fixture(scope="module")
def server(credit_run):
    port = _free_port()
    root = credit_run["root"]
    env = {**os.environ, "CARDLAB_ROOT": str(root)}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = open(root / "mlflow_server.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--workers",
            "1",
        ],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if _get(f"{base}/health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(
                    f"mlflow server did not start: {(root / 'mlflow_server.log').read_text()[-2000:]}"
                )
            time.sleep(1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_report_artifact_is_served(credit_run, server):
    status, body = _get(f"{server}/get-artifact?path=report.html&run_uuid={credit_run['run_id']}")
    assert status == 200
    assert "Data lineage" in body and "Monitoring plan" in body
    status, body = _get(
        f"{server}/get-artifact?path=explain/explain_metrics.json&run_uuid={credit_run['run_id']}"
    )
    assert "shap_additivity_max_err" in json.loads(body)


def test_run_page_shows_metrics_and_report(credit_run, server, tmp_path):
    url = f"{server}/#/experiments/{credit_run['experiment_id']}/runs/{credit_run['run_id']}"
    dom = _chromium(url, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "credit-model" in dom.stdout
    assert "oot_auc" in dom.stdout
    assert "shap_truth_spearman" in dom.stdout or "shap_additivity_max_err" in dom.stdout
    shot = REPO / "experiments" / "credit" / "mlflow_ui.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    png = tmp_path / "mlflow_ui.png"
    res = _chromium(url, tmp_path, f"--screenshot={png}")
    assert res.returncode == 0 and png.exists() and png.stat().st_size > 10_000, res.stderr[-2000:]
    shutil.copyfile(png, shot)
    art = _chromium(f"{url}/artifacts/report.html", tmp_path, "--dump-dom")
    assert "report.html" in art.stdout
