"""`cardlab summary` (the end of `make run`): each task's headline metrics from the registry (not the first
keys of an alphabetical list), its bars with their lower bounds, and which files this run wrote."""

from __future__ import annotations

import json
import os
import time

from typer.testing import CliRunner

from cardlab import taskspec
from cardlab.cli import app


def test_summary_leads_with_headlines_and_bars_and_tells_this_run_from_git(tmp_path):
    exp = tmp_path / "experiments"
    for name in ("churn", "limit"):
        (exp / name).mkdir(parents=True)
    # alphabetically first keys that must not be shown in place of the headline
    churn = {"aaa_first_alphabetically": 9.0, "oot_auc_oracle_rows": 123, "qini_capture": 0.44}
    churn |= {"qini_capture_lo": 0.39, "oot_auc_ceiling_ratio": 0.96, "oot_auc_ceiling_ratio_lo": 0.95}
    churn["bars"] = [{"name": "qini_capture", "value": 0.44, "lower": 0.39, "upper": 0.48, "threshold": 0.6,
                      "verdict": "not met"}]  # fmt: skip
    (exp / "churn" / "metrics.json").write_text(json.dumps(churn))
    (exp / "limit" / "metrics.json").write_text(json.dumps({"profit_capture": 0.43, "oot_auc": 0.7}))
    old = time.time() - 3600
    os.utime(exp / "limit" / "metrics.json", (old, old))  # as checked out from git, not re-run
    since = time.time() - 60
    result = CliRunner(env={"COLUMNS": "250"}).invoke(
        app, ["summary", "--experiments", str(exp), "--data", str(tmp_path / "data"), "--since", str(since)]
    )
    assert result.exit_code == 0, result.output
    out = result.output
    for key in taskspec.get("churn").headline:
        assert key in out
    assert "aaa_first_alphabetically" not in out and "oot_auc_oracle_rows" not in out
    assert "profit_capture=0.43" in out
    assert "qini_capture 0.44 (lo 0.39) vs 0.6: not met" in out
    churn_line = next(line for line in out.splitlines() if line.startswith("│ churn "))
    limit_line = next(line for line in out.splitlines() if line.startswith("│ limit "))
    assert "this run" in churn_line and "not re-run" in limit_line
