"""The results tables in README.md and docs/tasks/*.md are generated from experiments/*/metrics.json
(``cardlab docs``, src/cardlab/reports/results.py): they fail this test as soon as they differ from what the
committed metrics give, so a number in them cannot go stale or be typed by hand."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from cardlab.reports import results

REPO = Path(__file__).resolve().parents[1]


def test_results_blocks_match_the_committed_metrics():
    stale = results.update_docs(REPO, check=True)
    assert not stale, f"results tables are stale in {stale}: run `cardlab docs` (make run does)"


def test_every_doc_has_its_blocks_and_no_hand_typed_old_numbers():
    text = {rel: (REPO / rel).read_text(encoding="utf-8") for rel in results.DOCS}
    assert "<!-- results:summary -->" in text["README.md"] and "<!-- results:bars -->" in text["README.md"]
    for task in results.TASK_FILES:
        assert f"<!-- results:{task} -->" in text[f"docs/tasks/{task}.md"]
    # the stale ci numbers the audit found in docs/tasks/credit.md (issue #17)
    assert not re.search(r"0\.658|0\.706 \|", text["docs/tasks/credit.md"])


def test_a_changed_metric_makes_the_docs_stale(tmp_path: Path):
    for rel in [*results.DOCS, *(f"experiments/{t}/metrics.json" for t in results.TASK_FILES)]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, tmp_path / rel)
    assert results.update_docs(tmp_path, check=True) == []
    path = tmp_path / "experiments" / "credit" / "metrics.json"
    m = json.loads(path.read_text())
    m["oot_auc_ceiling_ratio"] = 0.5
    path.write_text(json.dumps(m))
    assert "README.md" in results.update_docs(tmp_path, check=True)
    results.update_docs(tmp_path)
    assert "0.500" in (tmp_path / "docs/tasks/credit.md").read_text()


def test_an_unknown_block_is_an_error():
    with pytest.raises(ValueError, match="unknown results block"):
        results.render("<!-- results:nope -->\n<!-- /results -->", {}, "x.md")
