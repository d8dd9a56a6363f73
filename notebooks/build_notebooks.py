"""Build the notebooks of this folder from their percent-format sources and, with ``--execute``, run
them here and save them with their outputs (so that they read on GitHub).

    python notebooks/build_notebooks.py             # decoding_strategies.py -> decoding_strategies.ipynb, ...
    python notebooks/build_notebooks.py --execute   # ... and run them (two to three minutes on 2 CPU cores)
    python notebooks/build_notebooks.py --execute attention_maps.py   # only the sources named

A source is a Python file whose cells start with ``# %%`` (code) or ``# %% [markdown]`` (markdown, every
line a comment); text before the first cell is left out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from lrcn.io import write_text

HERE = Path(__file__).resolve().parent
SOURCES = ("decoding_strategies.py", "attention_maps.py")


def build(source: str | Path) -> nbformat.NotebookNode:
    """The notebook (without outputs) of a percent-format source file."""
    cells: list[nbformat.NotebookNode] = []
    kind, lines = None, []

    def close_cell() -> None:
        if kind is None:
            return
        text = "\n".join(lines).strip("\n")
        if kind == "markdown":
            text = "\n".join(re.sub(r"^# ?", "", line) for line in text.splitlines())
            cells.append(nbformat.v4.new_markdown_cell(text, id=f"cell-{len(cells):02d}"))
        else:
            cells.append(nbformat.v4.new_code_cell(text, id=f"cell-{len(cells):02d}"))

    for line in Path(source).read_text(encoding="utf-8").splitlines():
        if line.startswith("# %%"):
            close_cell()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        else:
            lines.append(line)
    close_cell()
    metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                "language_info": {"name": "python"}}
    return nbformat.v4.new_notebook(cells=cells, metadata=metadata)


def execute(nb: nbformat.NotebookNode, cwd: str | Path, timeout: int = 600) -> nbformat.NotebookNode:
    """Run every cell of ``nb`` (in place) in a python3 kernel of *this* interpreter started in ``cwd``,
    whatever kernel named python3 Jupyter would otherwise find; raises on the first failing cell."""
    with tempfile.TemporaryDirectory() as data_dir:
        spec = Path(data_dir) / "kernels" / "python3"
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3", "language": "python"}))
        before = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = os.pathsep.join([data_dir, *([before] if before else [])])  # searched first
        try:
            NotebookClient(nb, kernel_name="python3", timeout=timeout, record_timing=False,
                           resources={"metadata": {"path": str(cwd)}}).execute()
        finally:
            if before is None:
                del os.environ["JUPYTER_PATH"]
            else:
                os.environ["JUPYTER_PATH"] = before
    return nb


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execute", action="store_true", help="run the notebooks here and save their outputs")
    parser.add_argument("sources", nargs="*", metavar="SOURCE", help=f"build only these (default: all of {SOURCES})")
    args = parser.parse_args(argv)
    if set(args.sources) - set(SOURCES):
        parser.error(f"unknown sources {sorted(set(args.sources) - set(SOURCES))}: choose from {SOURCES}")
    for name in args.sources or SOURCES:
        source = HERE / name
        nb = build(source)
        if args.execute:
            started = time.perf_counter()
            execute(nb, HERE)
            print(f"{name}: ran in {time.perf_counter() - started:.0f} s")
        target = source.with_suffix(".ipynb")
        text = nbformat.writes(nb)
        write_text(target, text if text.endswith("\n") else text + "\n")
        print(f"wrote {target} ({target.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
