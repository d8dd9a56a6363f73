"""notebooks/decoding_strategies.ipynb: saved in step with its source and with its outputs, and it runs
top to bottom (in a kernel of this interpreter, in a temporary folder) comparing every strategy.
(``saved_notebook`` and ``rerun_notebook`` serve the other notebooks' tests too.)"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import nbformat
import pytest

from lrcn.metrics import java_available

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOK = NOTEBOOKS / "decoding_strategies.ipynb"
STRATEGIES = [
    "greedy", "beam 1", "beam 3", "beam 5", "beam 10", "beam 5, avg", "beam 5, gnmt",
    "diverse 3x2, λ=0.5", "diverse 3x2, λ=2",
    "sample T=1", "sample T=0.5", "top-k 3, T=0.7", "top-k 3, T=1", "top-k 3, T=1.5",
    "top-p 0.8, T=0.7", "top-p 0.8, T=1", "top-p 0.8, T=1.5",
    "beam 10, re-rank by features", "beam 10, re-rank by captions",
]
COLUMNS = ["BLEU-4", "METEOR", "CIDEr-D", "distinct-1", "distinct-2", "novel", "mBLEU-4", "mean length",
           "captions/s"]


def builder():
    """notebooks/build_notebooks.py as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location("build_notebooks", NOTEBOOKS / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def outputs(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]


def strategy_table(nb: nbformat.NotebookNode) -> dict[str, dict[str, str]]:
    """The displayed Markdown table: strategy -> column -> cell text."""
    tables = [o.data["text/markdown"] for o in outputs(nb)
              if "text/markdown" in o.get("data", {}) and o.data["text/markdown"].startswith("| strategy |")]
    assert len(tables) == 1, "expected one strategy table among the outputs"
    lines = [[part.strip() for part in line.strip().strip("|").split("|")] for line in tables[0].splitlines()]
    header, rows = lines[0], lines[2:]
    assert header == ["strategy", *COLUMNS]
    return {row[0]: dict(zip(COLUMNS, row[1:])) for row in rows}


def number(text: str) -> float:
    """A cell's value: "2.46 ± 0.19" -> 2.46, "—" (not applicable) -> nan."""
    return math.nan if text == "—" else float(text.split("±")[0])


def check_table(nb: nbformat.NotebookNode) -> None:
    table = strategy_table(nb)
    assert list(table) == ["blind", *STRATEGIES, "references"]
    rows = {name: {c: number(v) for c, v in row.items() if v != "skipped"} for name, row in table.items()}
    for name in STRATEGIES:
        if java_available():
            assert 0 < rows[name]["METEOR"] < 1
        else:
            assert table[name]["METEOR"] == "skipped"
        assert rows[name]["captions/s"] > 0 and rows[name]["mean length"] > 3
    # the model looks at the images: clearly better than one caption for all of them
    assert rows["greedy"]["CIDEr-D"] > 1.5 * rows["blind"]["CIDEr-D"]
    # each row really decoded with its own settings
    assert {c: table["beam 1"][c] for c in COLUMNS[:-1]} == {c: table["greedy"][c] for c in COLUMNS[:-1]}
    assert rows["beam 5, avg"]["mean length"] > rows["beam 5"]["mean length"]
    assert rows["sample T=1"]["mBLEU-4"] < rows["beam 5"]["mBLEU-4"]
    assert math.isnan(rows["greedy"]["mBLEU-4"]) and not math.isnan(rows["beam 3"]["mBLEU-4"])
    for metric in ("features", "captions"):      # re-ranking re-orders beam 10's candidates
        assert {c: table[f"beam 10, re-rank by {metric}"][c] for c in COLUMNS[:-1]} != \
            {c: table["beam 10"][c] for c in COLUMNS[:-1]}
    figures = [o for o in outputs(nb) if "image/png" in o.get("data", {})]
    assert len(figures) == 3


def saved_notebook(notebook: Path) -> nbformat.NotebookNode:
    """The saved ``notebook``, checked to be its source's build, executed, without errors or stderr, under 1 MB."""
    saved = nbformat.read(notebook, as_version=4)
    nbformat.validate(saved)
    built = builder().build(notebook.with_suffix(".py"))
    assert [(c.cell_type, c.source) for c in saved.cells] == [(c.cell_type, c.source) for c in built.cells], \
        f"{notebook.name} is out of date: run `python notebooks/build_notebooks.py --execute`"
    assert all(cell.execution_count for cell in saved.cells if cell.cell_type == "code"), "saved unexecuted"
    assert not [o for o in outputs(saved) if o.output_type == "error" or o.get("name") == "stderr"]
    assert notebook.stat().st_size < 1_000_000
    return saved


def rerun_notebook(notebook: Path, cwd: Path) -> nbformat.NotebookNode:
    """``notebook`` run afresh top to bottom in ``cwd``; raises CellExecutionError on a failing cell."""
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    builder().execute(nb, cwd=cwd, timeout=300)
    assert not [o for o in outputs(nb) if o.output_type == "error"]
    return nb


def test_saved_notebook_is_built_from_its_source_and_keeps_its_outputs():
    check_table(saved_notebook(NOTEBOOK))


@pytest.mark.slow
def test_notebook_runs_top_to_bottom_and_compares_every_strategy(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = rerun_notebook(NOTEBOOK, tmp_path)
    check_table(nb)
    assert (tmp_path / "_work" / "runs" / "lrcn1u-shapes" / "checkpoints" / "best.pt").exists()
