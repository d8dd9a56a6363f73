"""`lrcn activity CONFIG`: train and evaluate LRCN activity recognition (lrcn/activity.py) on a
video dataset whose split JSON entries carry a class ``label`` (the shapes-video set does).

The config is an ordinary lrcn config; the keys used are ``data.*`` (split JSON, frame sampling),
``encoder.*`` (the frozen frame CNN; per-frame features are cached in the feature store and shared
with video captioning runs on the same data), ``decoder.hidden_dim`` / ``dropout`` / ``frame_deltas``
(the activity LSTM), ``train.epochs / batch_size / lr / weight_decay / seed / device``, and
``train.runs_dir`` / ``name`` for the output folder::

    runs/NAME/
      config.yaml            the resolved config
      activity.pt            weights of the best validation epoch, class names (lrcn.activity.load_activity)
      activity_test.json     clip and per-frame accuracy, per-class accuracy, confusion matrix, predictions
      confusion_test.png     the confusion matrix, row-normalised, counts written in
      tb/                    TensorBoard: loss, validation accuracy, test accuracy, confusion figure
"""

from __future__ import annotations

from pathlib import Path

import torch

from lrcn.activity import ActivityResult, labels_from_samples, run_activity
from lrcn.config import Config, save_config
from lrcn.data.loaders import cached_features, load_samples, split
from lrcn.data.records import Sample
from lrcn.errors import ConfigError
from lrcn.inference import config_encoder, frame_delta_args
from lrcn.run import resolve_device


def train_activity_run(config: Config, progress: bool = True) -> tuple[Path, ActivityResult]:
    """Train an activity LSTM on the train split (keeping the best epoch by val accuracy when there
    is a val split) and evaluate it on test; returns the output folder and the test result."""
    if config.data.modality != "video":
        raise ConfigError(f"lrcn activity classifies clips; data.modality is {config.data.modality!r}, set it to video")
    out_dir = Path(config.train.runs_dir) / config.name
    device = resolve_device(config.train.device)
    samples = load_samples(config)
    labels_from_samples(samples)                    # every clip labelled, before any extraction
    encoder = config_encoder(config)                # as `lrcn train` builds it: the feature stores are shared
    parts: dict[str, tuple[torch.Tensor, list[Sample]]] = {}
    for name in ("train", "val", "test"):
        if name == "val" and not any(s.split == "val" for s in samples):
            continue
        # frame features [N, T, D] from the store `lrcn train` / `lrcn evaluate` use for the same split
        parts[name] = cached_features(config, split(samples, name), encoder, device, progress)
    _, classes = labels_from_samples(parts["train"][1])
    data = {name: (x, labels_from_samples(kept, classes=classes)[0]) for name, (x, kept) in parts.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, out_dir / "config.yaml")
    t = config.train
    result = run_activity(data["train"], data.get("val"), data["test"], classes, out_dir,
                          hidden_dim=config.decoder.hidden_dim, dropout=config.decoder.dropout, epochs=t.epochs,
                          batch_size=t.batch_size, lr=t.lr, weight_decay=t.weight_decay, seed=t.seed, device=device,
                          progress=progress, **frame_delta_args(config, parts["train"][0].shape[-1]))
    return out_dir, result


def format_activity(result: ActivityResult) -> str:
    """A plain-text report: clip and per-frame accuracy, then the accuracy of each class."""
    lines = [f"clip accuracy {result.accuracy:.3f}   per-frame accuracy {result.frame_accuracy:.3f}   "
             f"({int(result.confusion.sum())} test clips, {len(result.class_names)} classes, "
             f"chance {1 / len(result.class_names):.3f})"]
    counts = result.confusion.sum(dim=1)
    for (name, accuracy), n in zip(result.per_class_accuracy.items(), counts.tolist()):
        lines.append(f"  {name:<24} {accuracy:.3f}  ({n} clips)")
    return "\n".join(lines)
