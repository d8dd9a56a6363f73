"""Checkpoints hold tensors and plain data only; written atomically, loaded with weights_only=True."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

import lrcn
from lrcn.errors import CheckpointError
from lrcn.io import atomic_path

FORMAT = "lrcn-checkpoint-1"


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` (tensors, numbers, strings, lists, dicts) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "lrcn_version": lrcn.__version__, **payload}, tmp)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely: pickled objects are refused, other formats are named."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"checkpoint {path} holds pickled Python objects, which lrcn never writes and will not load "
            f"(loading them could run arbitrary code): {str(e).splitlines()[0]}") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"checkpoint {path} is not a readable torch file (truncated or corrupt?): {e}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"checkpoint {path} has format {found!r}, not {FORMAT!r}: it was written by another "
                              f"program or an incompatible lrcn version; retrain, or load it with that version")
    return data
