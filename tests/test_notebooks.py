"""Execute every jupytext notebook in notebooks/ against the pipeline outputs (slow).

Each ``notebooks/NN-topic.py`` (percent format) is converted with jupytext to a temporary ``.ipynb`` and run
top to bottom by nbclient with a per-cell timeout; any error fails the test that carries the notebook's name.
Before that, the pipeline outputs listed in ``dvc.lock`` must exist: when some are missing (or dvc.lock lacks a
stage of dvc.yaml) the fixture runs ``dvc repro`` in the repository root (idempotent, fast when up to date).

The kernel is the venv's own Python: ``JUPYTER_PATH`` puts ``<sys.prefix>/share/jupyter`` (where ipykernel
installs the ``python3`` kernelspec) ahead of any user-level kernelspec, and jupyter_client replaces the
spec's bare ``python`` with the interpreter running the test; an injected first cell asserts it.
``CARDLAB_ROOT`` (if set) points the notebooks and this fixture at another tree with the same layout.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]-*.py"))
CELL_TIMEOUT_S = 300

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("source", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(source: Path, pipeline_root: Path, tmp_path: Path, monkeypatch) -> None:
    import jupytext
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    # the kernel: the venv's python3 kernelspec first; inline matplotlib (not the Makefile's Agg)
    monkeypatch.setenv("JUPYTER_PATH", str(Path(sys.prefix) / "share" / "jupyter"))
    monkeypatch.setenv("CARDLAB_ROOT", str(pipeline_root))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")

    nb = jupytext.read(source)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    check = (
        f"import sys\nassert sys.prefix == {sys.prefix!r}, f'kernel runs {{sys.executable}}, not the venv'"
    )
    nb.cells.insert(0, nbformat.v4.new_code_cell(check))
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(source.parent)}},
    )
    t0 = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as err:
        pytest.fail(f"{source.name} failed:\n{err}", pytrace=False)
    finally:
        nbformat.write(nb, tmp_path / f"{source.stem}.ipynb")
    print(f"{source.name}: {time.perf_counter() - t0:.1f} s")
