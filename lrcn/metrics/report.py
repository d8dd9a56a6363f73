"""Score reports: aligned text and Markdown tables (one row per system, one column per metric),
and the metrics / per-image files a run folder keeps."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from lrcn.io import write_json, write_text
from lrcn.metrics.formats import finite_or_none, json_image_id
from lrcn.metrics.scoring import METRICS, Scores


def _columns(rows: Mapping[str, Mapping[str, float]]) -> list[str]:
    seen = list(dict.fromkeys(m for r in rows.values() for m in r))
    return [m for m in METRICS if m in seen] + [m for m in seen if m not in METRICS]


def _cell(row: Mapping[str, float], metric: str, digits: int) -> str:
    value = row.get(metric)
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(rows: Mapping[str, Mapping[str, float]], digits: int = 4) -> str:
    """Plain-text table: a row per system (e.g. blind, greedy, beam3), a column per metric."""
    columns = _columns(rows)
    table = [["system", *columns]] + [[name, *(_cell(r, m, digits) for m in columns)] for name, r in rows.items()]
    widths = [max(len(line[k]) for line in table) for k in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(w) if k == 0 else cell.rjust(w) for k, (cell, w) in enumerate(zip(line, widths)))
             for line in table]
    return "\n".join(line.rstrip() for line in lines)


def markdown_table(rows: Mapping[str, Mapping[str, float]], digits: int = 4) -> str:
    """The same table in Markdown."""
    columns = _columns(rows)
    lines = ["| system | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    lines += [f"| {name} | " + " | ".join(_cell(r, m, digits) for m in columns) + " |" for name, r in rows.items()]
    return "\n".join(lines)


def save_scores(directory: str | os.PathLike, name: str, scores: Scores) -> dict[str, Path]:
    """Write ``metrics_<name>.json`` (corpus scores, pycocoevalcap names), ``metrics_<name>.md``
    (the table, the number of images, skipped metrics) and ``per_image_<name>.json`` (a list of
    ``{"image_id": ..., metric: score}`` as pycocoevalcap's ``evalImgs``); returns the paths."""
    directory = Path(directory)
    paths = {"metrics": directory / f"metrics_{name}.json", "report": directory / f"metrics_{name}.md",
             "per_image": directory / f"per_image_{name}.json"}
    write_json(paths["metrics"], {m: finite_or_none(v) for m, v in scores.corpus.items()})
    notes = [f"{len(scores.per_image)} images, backend {scores.backend}."]
    notes += [f"{metric} skipped: {reason}" for metric, reason in scores.skipped.items()]
    write_text(paths["report"], markdown_table({name: scores.corpus}) + "\n\n" + "\n".join(notes) + "\n")
    write_json(paths["per_image"], [{"image_id": json_image_id(i), **{m: finite_or_none(v) for m, v in s.items()}}
                                    for i, s in scores.per_image.items()])
    return paths
