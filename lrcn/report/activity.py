"""What activity recognition reports: the confusion matrix (counts, a row-normalised plot) and the
test result (clip and per-frame accuracy, per-class accuracy) as JSON and as text."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from lrcn.io import atomic_path

def confusion_matrix(predictions: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """[C, C] counts: row = true class, column = predicted class."""
    flat = labels.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def plot_confusion(confusion: Tensor, class_names: Sequence[str], title: str = "confusion matrix"):
    """A matplotlib Figure of the row-normalised confusion matrix, with the counts written in."""
    from matplotlib.figure import Figure   # an optional dependency (lrcn[dev]), needed for the plot only

    counts = confusion.double()
    rates = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    C = len(class_names)
    side = max(4.0, 0.5 * C + 2.0)
    fig = Figure(figsize=(side + 1.0, side))
    ax = fig.add_subplot()
    image = ax.imshow(rates.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xticks(range(C), class_names, rotation=45, ha="right")
    ax.set_yticks(range(C), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if C <= 30:
        for i in range(C):
            for j in range(C):
                ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", fontsize=8,
                        color="white" if rates[i, j] > 0.5 else "black")
    fig.tight_layout()
    return fig


def save_confusion(confusion: Tensor, class_names: Sequence[str], path: str | os.PathLike,
                   title: str = "confusion matrix") -> Path:
    """Write the confusion matrix plot as a PNG (atomically)."""
    fig = plot_confusion(confusion, class_names, title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return Path(path)


@dataclass
class ActivityResult:
    accuracy: float                   # clip accuracy (per-step probabilities averaged over the clip)
    frame_accuracy: float             # accuracy of the individual per-step predictions
    confusion: Tensor                 # [C, C], row = true class
    class_names: list[str]
    predictions: list[int] = field(default_factory=list)

    @property
    def per_class_accuracy(self) -> dict[str, float]:
        totals = self.confusion.sum(dim=1).clamp(min=1)
        return {name: float(self.confusion[i, i] / totals[i]) for i, name in enumerate(self.class_names)}

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "frame_accuracy": self.frame_accuracy,
                "per_class_accuracy": self.per_class_accuracy, "class_names": self.class_names,
                "confusion": self.confusion.tolist(), "predictions": self.predictions}


def format_activity(result: ActivityResult) -> str:
    """A plain-text report: clip and per-frame accuracy, then the accuracy of each class."""
    lines = [f"clip accuracy {result.accuracy:.3f}   per-frame accuracy {result.frame_accuracy:.3f}   "
             f"({int(result.confusion.sum())} test clips, {len(result.class_names)} classes, "
             f"chance {1 / len(result.class_names):.3f})"]
    counts = result.confusion.sum(dim=1)
    for (name, accuracy), n in zip(result.per_class_accuracy.items(), counts.tolist()):
        lines.append(f"  {name:<24} {accuracy:.3f}  ({n} clips)")
    return "\n".join(lines)
