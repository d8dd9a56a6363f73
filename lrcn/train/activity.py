"""Training and testing LRCN activity recognition (the model: lrcn.models.activity; its reports:
lrcn.report.activity). :func:`train_activity_run` does it all for a config (``lrcn activity``).

Typical use, on frame features from the feature store (``lrcn.data.loaders.cached_features``)::

    y, classes = labels_from_samples(train_samples)
    model = ActivityLRCN(feature_dim=x.shape[-1], num_classes=len(classes))
    train_activity(model, x, y, val=(val_x, val_y), epochs=30, writer=writer)
    result = evaluate_activity(model, test_x, test_y, classes, out_dir=run_dir, writer=writer)
    result.accuracy, result.confusion          # confusion.png and activity_test.json in run_dir
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from lrcn.config import Config, save_config
from lrcn.data.loaders import cached_features, load_samples, split
from lrcn.data.records import Sample
from lrcn.errors import ConfigError, DataError, TrainingError
from lrcn.io import write_json
from lrcn.models.activity import ActivityLRCN
from lrcn.models.factory import config_encoder, frame_delta_args
from lrcn.report.activity import ActivityResult, confusion_matrix, plot_confusion, save_confusion
from lrcn.run import resolve_device
from lrcn.train.checkpoint import load_checkpoint, save_checkpoint


def activity_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy of every step's prediction [B, T, C] against its clip's label [B]."""
    B, T, C = logits.shape
    return F.cross_entropy(logits.reshape(B * T, C).float(), labels.repeat_interleave(T))


def labels_from_samples(samples, key: str = "label", classes: Sequence[str] | None = None
                        ) -> tuple[Tensor, list[str]]:
    """Class ids [N] of the samples' ``meta[key]`` and the class names (sorted, unless ``classes`` given)."""
    missing = next((s for s in samples if key not in s.meta), None)
    if missing is not None:
        raise DataError(f"sample {missing.id} ({missing.path}) has no {key!r} in its split JSON entry; "
                        f"activity recognition needs a class label per clip")
    names = list(classes) if classes is not None else sorted({str(s.meta[key]) for s in samples})
    index = {name: i for i, name in enumerate(names)}
    unknown = next((s for s in samples if str(s.meta[key]) not in index), None)
    if unknown is not None:
        raise DataError(f"sample {unknown.id}: label {unknown.meta[key]!r} is not one of the {len(names)} "
                        f"training classes ({', '.join(names[:8])}{', ...' if len(names) > 8 else ''})")
    return torch.tensor([index[str(s.meta[key])] for s in samples], dtype=torch.long), names


@torch.inference_mode()
def predict_activity(model: ActivityLRCN, clips: Tensor, *, batch_size: int = 64,
                     device: str | torch.device = "cpu") -> tuple[Tensor, Tensor]:
    """Clip predictions [N] (per-step probabilities averaged) and per-step predictions [N, T]."""
    model.eval().to(device)
    clip_pred, frame_pred = [], []
    for x in clips.split(batch_size):
        logits = model(x.to(device)).float().cpu()                     # [b, T, C]
        clip_pred.append(F.softmax(logits, dim=-1).mean(dim=1).argmax(-1))
        frame_pred.append(logits.argmax(-1))
    if not clip_pred:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, clips.shape[1], dtype=torch.long)
    return torch.cat(clip_pred), torch.cat(frame_pred)


def evaluate_activity(model: ActivityLRCN, clips: Tensor, labels: Tensor, class_names: Sequence[str], *,
                      batch_size: int = 64, device: str | torch.device = "cpu",
                      out_dir: str | os.PathLike | None = None, split: str = "test", writer=None,
                      step: int = 0) -> ActivityResult:
    """Clip and per-frame accuracy and the confusion matrix of ``model`` on ``clips`` [N, T, ...].

    ``out_dir``: also write ``confusion_<split>.png`` and ``activity_<split>.json`` there.
    ``writer`` (a TensorBoard ``SummaryWriter``): log ``activity/<split>_accuracy``,
    ``activity/<split>_frame_accuracy`` and the confusion figure ``activity/<split>_confusion``.
    """
    if len(labels) == 0:
        raise DataError(f"no clips to evaluate in the {split} split")
    predictions, frame_predictions = predict_activity(model, clips, batch_size=batch_size, device=device)
    C = len(class_names)
    confusion = confusion_matrix(predictions, labels, C)
    result = ActivityResult(accuracy=float((predictions == labels).float().mean()),
                            frame_accuracy=float((frame_predictions == labels[:, None]).float().mean()),
                            confusion=confusion, class_names=list(class_names), predictions=predictions.tolist())
    title = f"{split}: clip accuracy {result.accuracy:.3f}"
    if out_dir is not None:
        save_confusion(confusion, class_names, Path(out_dir) / f"confusion_{split}.png", title)
        write_json(Path(out_dir) / f"activity_{split}.json", result.to_dict())
    if writer is not None:
        writer.add_scalar(f"activity/{split}_accuracy", result.accuracy, step)
        writer.add_scalar(f"activity/{split}_frame_accuracy", result.frame_accuracy, step)
        writer.add_figure(f"activity/{split}_confusion", plot_confusion(confusion, class_names, title), step)
    return result


def train_activity(model: ActivityLRCN, clips: Tensor, labels: Tensor, *, val: tuple[Tensor, Tensor] | None = None,
                   epochs: int = 30, batch_size: int = 32, lr: float = 1e-3, weight_decay: float = 0.0,
                   grad_clip: float = 5.0, seed: int = 0, device: str | torch.device = "cpu", writer=None,
                   progress: bool = True) -> list[dict]:
    """Train with a loss at every step (Adam); returns per-epoch ``{"epoch", "loss", "val_accuracy"?}``.

    ``clips`` [N, T, ...] are frame features, or frames when the model has a frame encoder.
    With ``val`` = (clips, labels), the clip accuracy is computed after each epoch and the
    weights of the best epoch are restored at the end. ``writer``: TensorBoard scalars.
    """
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    history, best, best_state, step = [], -math.inf, None, 0
    for epoch in tqdm(range(epochs), desc="activity", disable=not progress, leave=False):
        model.train()
        total, seen = 0.0, 0
        for rows in torch.randperm(len(clips), generator=generator).split(batch_size):
            loss = activity_loss(model(clips[rows].to(device)), labels[rows].to(device))
            if not torch.isfinite(loss):
                raise TrainingError(f"the activity loss became {loss.item()} at epoch {epoch + 1}; lower lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            total, seen, step = total + loss.item() * len(rows), seen + len(rows), step + 1
        record = {"epoch": epoch + 1, "loss": total / max(seen, 1)}
        if writer is not None:
            writer.add_scalar("activity/train_loss", record["loss"], step)
        if val is not None:
            predictions, _ = predict_activity(model, val[0], batch_size=batch_size, device=device)
            record["val_accuracy"] = accuracy = float((predictions == val[1]).float().mean())
            if writer is not None:
                writer.add_scalar("activity/val_accuracy", accuracy, step)
            if accuracy > best:
                best = accuracy
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        history.append(record)
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


def run_activity(train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor] | None, test: tuple[Tensor, Tensor],
                 class_names: Sequence[str], out_dir: str | os.PathLike, *, hidden_dim: int = 256,
                 dropout: float = 0.5, epochs: int = 30, batch_size: int = 32, lr: float = 1e-3,
                 weight_decay: float = 0.0, seed: int = 0, device: str | torch.device = "cpu",
                 delta_dims: int = 0, delta_gain: float = 1.0, progress: bool = True) -> ActivityResult:
    """Train an :class:`ActivityLRCN` on frame features (clips [N, T, D], labels [N]) and evaluate it.

    Writes into ``out_dir``: ``activity.pt`` (the weights of the best validation epoch, class names
    and sizes; read back with :func:`load_activity`), ``tb/`` (TensorBoard: loss, accuracies, the
    confusion matrix), ``confusion_test.png`` and ``activity_test.json``.
    """
    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    x, y = train
    model = ActivityLRCN(x.shape[-1], len(class_names), hidden_dim, dropout, delta_dims=delta_dims,
                         delta_gain=delta_gain)
    writer = SummaryWriter(out_dir / "tb")
    try:
        history = train_activity(model, x, y, val=val, epochs=epochs, batch_size=batch_size, lr=lr,
                                 weight_decay=weight_decay, seed=seed, device=device, writer=writer, progress=progress)
        steps = math.ceil(len(x) / batch_size) * epochs
        result = evaluate_activity(model, *test, class_names, device=device, out_dir=out_dir, split="test",
                                   writer=writer, step=steps)
    finally:
        writer.close()
    save_checkpoint(out_dir / "activity.pt", {
        "model": {k: v.cpu() for k, v in model.state_dict().items()}, "class_names": list(class_names),
        "feature_dim": int(x.shape[-1]), "hidden_dim": hidden_dim, "delta_dims": delta_dims,
        "delta_gain": delta_gain, "history": history})
    return result


def load_activity(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[ActivityLRCN, list[str]]:
    """The model written by :func:`run_activity` (in eval mode) and its class names."""
    ckpt = load_checkpoint(path)
    model = ActivityLRCN(ckpt["feature_dim"], len(ckpt["class_names"]), ckpt["hidden_dim"],
                         delta_dims=ckpt.get("delta_dims", 0), delta_gain=ckpt.get("delta_gain", 1.0))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), list(ckpt["class_names"])


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
