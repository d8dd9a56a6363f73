"""`lrcn activity CONFIG`: train and evaluate LRCN activity recognition (lrcn.train.activity) on a
video dataset whose split JSON entries carry a class ``label`` (the shapes-video set does).

The config is an ordinary lrcn config; the keys used are ``data.*`` (split JSON, frame sampling),
``encoder.*`` (the frozen frame CNN; per-frame features are cached in the feature store and shared
with video captioning runs on the same data), ``decoder.hidden_dim`` / ``dropout`` / ``frame_deltas``
(the activity LSTM), ``train.epochs / batch_size / lr / weight_decay / seed / device``, and
``train.runs_dir`` / ``name`` for the output folder::

    runs/NAME/
      config.yaml            the resolved config
      activity.pt            weights of the best validation epoch, class names (lrcn.train.activity.load_activity)
      activity_test.json     clip and per-frame accuracy, per-class accuracy, confusion matrix, predictions
      confusion_test.png     the confusion matrix, row-normalised, counts written in
      tb/                    TensorBoard: loss, validation accuracy, test accuracy, confusion figure
"""

from __future__ import annotations

import argparse

from lrcn.commands.options import add_set_argument
from lrcn.config import load_config
from lrcn.report.activity import format_activity
from lrcn.train.activity import train_activity_run


def register(sub) -> None:
    s = sub.add_parser("activity", help="train and evaluate LRCN activity recognition on clips with a 'label'")
    s.add_argument("config", help="a YAML config, e.g. experiments/activity_shapes_video.yaml")
    add_set_argument(s)
    s.set_defaults(func=run)


def run(a: argparse.Namespace) -> None:
    out_dir, result = train_activity_run(load_config(a.config, a.set), progress=not a.quiet)
    print(format_activity(result))
    print(f"wrote {out_dir / 'activity_test.json'}, {out_dir / 'confusion_test.png'} and TensorBoard logs in "
          f"{out_dir / 'tb'}")
