"""Render ``feature_dictionary.json`` as Markdown (docs/feature_dictionary.md).

python -m cardlab.features.docs data/features/feature_dictionary.json > docs/feature_dictionary.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _dir(d: dict[str, int]) -> str:
    return ", ".join(f"{t} {v:+d}" if v else f"{t} 0" for t, v in d.items())


def render(dictionary: dict) -> str:
    lines = [
        "# Feature dictionary",
        "",
        "Generated from `feature_dictionary.json` by `python -m cardlab.features.docs` - do not edit by hand.",
        "",
        f"Direction: {dictionary['direction_meaning']}.",
        "",
        "| task | rows | features | split (valid_start / gap_months / oot_start / oot_end) |",
        "|---|---:|---:|---|",
    ]
    for task, info in dictionary["tasks"].items():
        sp = info["split"]
        lines.append(
            f"| {task} | {info['rows']:,} | {len(info['feature_columns'])} | "
            f"{sp['valid_start']} / {sp.get('gap_months', 0)} / {sp['oot_start']} / {sp['oot_end']} |"
        )
    lines += [
        "",
        "## Features",
        "",
        "| name | family | window (months) | tasks | direction | definition | reason (en) | reason (zh) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in sorted(dictionary["features"], key=lambda e: (e["family"], e["name"])):
        w = "" if e["window"] is None else str(e["window"])
        lines.append(
            f"| `{e['name']}` | {e['family']} | {w} | {', '.join(e['tasks'])} | {_dir(e['direction'])} | "
            f"{e['definition'].replace('|', '/')} | {e['reason_en']} | {e['reason_zh']} |"
        )
    lines += [
        "",
        "## Non-feature columns (keys, decisions, treatments, outcomes)",
        "",
        "| name | role | tasks | definition |",
        "|---|---|---|---|",
    ]
    for e in dictionary["non_features"]:
        lines.append(
            f"| `{e['name']}` | {e['role']} | {', '.join(e['tasks'])} | {e['definition'].replace('|', '/')} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0] if argv else "data/features/feature_dictionary.json")
    sys.stdout.write(render(json.loads(path.read_text(encoding="utf-8"))))


if __name__ == "__main__":
    main()
