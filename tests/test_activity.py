"""LRCN activity recognition: learns the direction of moving squares (which needs the frame
order), and reports accuracy and a confusion matrix (PNG and TensorBoard)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from lrcn.data.records import Sample
from lrcn.errors import DataError
from lrcn.models.activity import ActivityLRCN
from lrcn.report.activity import confusion_matrix
from lrcn.train.activity import (activity_loss, evaluate_activity, labels_from_samples, load_activity, predict_activity,
                                 run_activity, train_activity)

CLASSES = ["left", "right", "up", "down"]
OPPOSITE = torch.tensor([1, 0, 3, 2])
T, S, SIDE = 6, 12, 3          # frames per clip, frame side, square side


def moving_squares(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips [n, T, 3, S, S] of a coloured square moving one pixel per frame, on a noisy
    background, and their direction labels [n]. A clip played backwards is a clip of the opposite
    direction, so the set of frames alone cannot tell left from right."""
    rng = np.random.default_rng(seed)
    labels = torch.arange(n) % 4
    clips = rng.uniform(0.0, 0.3, (n, T, 3, S, S)).astype(np.float32)
    for i, label in enumerate(labels.tolist()):
        dx, dy = [(-1, 0), (1, 0), (0, -1), (0, 1)][label]
        # along the motion the path covers T - 1 pixels; start where the whole path fits
        x, y = (int(rng.integers(0, S - SIDE - (T - 1) + 1 if d else S - SIDE + 1)) + (T - 1) * (d < 0)
                for d in (dx, dy))
        colour = rng.uniform(0.6, 1.0, 3).astype(np.float32)
        for t in range(T):
            cx, cy = x + dx * t, y + dy * t
            clips[i, t, :, cy:cy + SIDE, cx:cx + SIDE] = colour[:, None, None]
    return torch.from_numpy(clips), labels


def tiny_cnn() -> nn.Module:
    """Frames [N, 3, S, S] -> [N, 32]; no global pooling, so where the square is survives."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(1),
                         nn.Linear(8 * (S // 2) ** 2, 32), nn.ReLU())


def test_moving_squares_are_what_the_test_says():
    clips, labels = moving_squares(8, seed=0)
    assert clips.shape == (8, T, 3, S, S) and labels.tolist() == [0, 1, 2, 3] * 2
    bright = (clips.min(dim=2).values > 0.5)                            # [n, T, S, S] square pixels
    assert bright.sum((2, 3)).eq(SIDE * SIDE).all()                     # whole square inside every frame
    ys, xs = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
    cx = (bright * xs).sum((2, 3)) / SIDE ** 2                          # [n, T] centre x
    cy = (bright * ys).sum((2, 3)) / SIDE ** 2
    assert torch.equal(cx[0].diff(), -torch.ones(T - 1)) and torch.equal(cy[0].diff(), torch.zeros(T - 1))
    assert torch.equal(cy[3].diff(), torch.ones(T - 1))


def test_learns_directions_end_to_end_and_uses_the_frame_order(tmp_path):
    torch.manual_seed(0)
    train_x, train_y = moving_squares(160, seed=1)
    val_x, val_y = moving_squares(40, seed=2)
    test_x, test_y = moving_squares(80, seed=3)
    model = ActivityLRCN(32, num_classes=4, hidden_dim=32, dropout=0.0, frame_encoder=tiny_cnn())
    before = evaluate_activity(model, test_x, test_y, CLASSES).accuracy
    history = train_activity(model, train_x, train_y, val=(val_x, val_y), epochs=25, batch_size=16, lr=8e-3,
                             progress=False)
    assert history[-1]["loss"] < history[0]["loss"] / 3
    result = evaluate_activity(model, test_x, test_y, CLASSES, out_dir=tmp_path)
    assert before < 0.5 and result.accuracy >= 0.9, (before, result.accuracy, history)
    assert result.confusion.sum() == 80 and result.confusion.diag().sum() == round(result.accuracy * 80)
    # played backwards, a clip is recognised as the opposite direction: the LSTM uses the order
    backwards, _ = predict_activity(model, test_x.flip(1))
    assert (backwards == OPPOSITE[test_y]).float().mean() >= 0.9


def test_learns_from_cached_frame_features():
    """Without a frame encoder the model takes frame features [N, T, D] (here: flattened pixels)."""
    torch.manual_seed(0)
    flat = lambda x: nn.functional.avg_pool2d(x.flatten(0, 1), 2).flatten(1).view(len(x), T, -1)
    (train_x, train_y), (test_x, test_y) = moving_squares(240, seed=4), moving_squares(80, seed=5)
    model = ActivityLRCN(3 * (S // 2) ** 2, num_classes=4, hidden_dim=64, dropout=0.0)
    train_activity(model, flat(train_x), train_y, epochs=30, batch_size=16, lr=5e-3, progress=False)
    assert evaluate_activity(model, flat(test_x), test_y, CLASSES).accuracy >= 0.9


def test_run_activity_writes_a_loadable_run(tmp_path):
    flat = lambda x: nn.functional.avg_pool2d(x.flatten(0, 1), 2).flatten(1).view(len(x), T, -1)
    data = [moving_squares(n, seed) for n, seed in ((64, 6), (16, 7), (32, 8))]
    train, val, test = [(flat(x), y) for x, y in data]
    result = run_activity(train, val, test, CLASSES, tmp_path, hidden_dim=16, dropout=0.1, epochs=3, delta_dims=5, delta_gain=3.0,
                          progress=False)
    assert {"activity.pt", "confusion_test.png", "activity_test.json", "tb"} <= {p.name for p in tmp_path.iterdir()}
    model, names = load_activity(tmp_path / "activity.pt")
    assert names == CLASSES and (model.deltas.dims, model.deltas.gain) == (5, 3.0)
    predictions, _ = predict_activity(model, test[0])
    assert predictions.tolist() == result.predictions


def test_clip_prediction_averages_the_per_step_probabilities():
    torch.manual_seed(0)
    model = ActivityLRCN(5, num_classes=3, hidden_dim=4).eval()
    x = torch.randn(2, 7, 5)
    logits = model(x)
    assert logits.shape == (2, 7, 3)
    torch.testing.assert_close(model.predict_proba(x), logits.softmax(-1).mean(1))
    labels = torch.tensor([2, 0])
    torch.testing.assert_close(activity_loss(logits, labels),
                               nn.functional.cross_entropy(logits.reshape(14, 3), torch.tensor([2] * 7 + [0] * 7)))


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    pred = torch.tensor([0, 1, 1, 2, 2, 2, 0])
    true = torch.tensor([0, 1, 2, 2, 2, 0, 0])
    assert confusion_matrix(pred, true, 3).tolist() == [[2, 0, 1], [0, 1, 0], [0, 1, 2]]


def test_evaluation_writes_the_confusion_png_json_and_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    torch.manual_seed(0)
    model = ActivityLRCN(5, num_classes=3, hidden_dim=4)
    x, y = torch.randn(9, 4, 5), torch.tensor([0, 1, 2] * 3)
    writer = SummaryWriter(tmp_path / "tb")
    result = evaluate_activity(model, x, y, ["walk", "run", "jump"], out_dir=tmp_path, split="test",
                               writer=writer, step=7)
    writer.close()
    png = Image.open(tmp_path / "confusion_test.png")
    assert png.format == "PNG" and png.size[0] > 200 and png.size[1] > 200
    import json
    saved = json.loads((tmp_path / "activity_test.json").read_text())
    assert saved["confusion"] == result.confusion.tolist() and saved["class_names"] == ["walk", "run", "jump"]
    assert saved["accuracy"] == pytest.approx(sum(result.confusion.diag().tolist()) / 9)
    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    assert "activity/test_confusion" in events.Tags()["images"]
    assert events.Scalars("activity/test_accuracy")[0].step == 7


def test_labels_from_samples():
    samples = [Sample(str(i), Path(f"/c{i}"), "train", ["x"], {"label": label})
               for i, label in enumerate(["run", "walk", "run", "jump"])]
    y, names = labels_from_samples(samples)
    assert names == ["jump", "run", "walk"] and y.tolist() == [1, 2, 1, 0]
    y, names = labels_from_samples(samples[:2], classes=["walk", "run"])
    assert y.tolist() == [1, 0]
    with pytest.raises(DataError, match="label 'jump' is not one of the 2 training classes"):
        labels_from_samples(samples, classes=["walk", "run"])
    with pytest.raises(DataError, match="sample 9 .* has no 'label'"):
        labels_from_samples([Sample("9", Path("/c9"), "train", ["x"])])
