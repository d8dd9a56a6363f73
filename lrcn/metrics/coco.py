"""pycocoevalcap's scorers, called one by one (never ``COCOEvalCap.evaluate()``, which always
builds SPICE and so downloads CoreNLP models and fails offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from lrcn.metrics.ptb import java_available

BLEU_NAMES = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4")
SPICE_MODELS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")

# the pycocoevalcap scorers take {id: [tokenized caption]} for references and for candidates
Captions = dict[int, list[str]]
Result = tuple[dict[str, float], dict[str, np.ndarray]]


def spice_unavailable() -> str | None:
    """Why SPICE cannot run here, or None if it can (java plus the jar and its Stanford models).
    pycocoevalcap (optional, the reference backend) is imported where used, here and below."""
    if not java_available():
        return "java not found on PATH"
    import pycocoevalcap.spice.spice as spice_module
    folder = Path(spice_module.__file__).resolve().parent
    missing = [name for name in ("spice-1.0.jar", *(f"lib/{m}" for m in SPICE_MODELS)) if not (folder / name).exists()]
    if missing:
        return (f"{', '.join(missing)} missing in {folder} (the Stanford CoreNLP 3.6.0 models SPICE needs are "
                "downloaded by `python -m pycocoevalcap.spice.get_stanford_models`, once, while online)")
    return None


def coco_bleu(gts: Captions, res: Captions) -> Result:
    from pycocoevalcap.bleu.bleu import Bleu
    corpus, per_image = Bleu(4).compute_score(gts, res, verbose=0)
    return dict(zip(BLEU_NAMES, map(float, corpus))), dict(zip(BLEU_NAMES, map(np.asarray, per_image)))


def coco_rouge(gts: Captions, res: Captions) -> Result:
    from pycocoevalcap.rouge.rouge import Rouge
    corpus, per_image = Rouge().compute_score(gts, res)
    return {"ROUGE_L": float(corpus)}, {"ROUGE_L": np.asarray(per_image)}


def coco_cider(gts: Captions, res: Captions) -> Result:
    from pycocoevalcap.cider.cider import Cider
    corpus, per_image = Cider().compute_score(gts, res)
    return {"CIDEr": float(corpus)}, {"CIDEr": np.asarray(per_image)}


def coco_meteor(gts: Captions, res: Captions) -> Result:
    """METEOR 1.5 (Java, started here and stopped after scoring)."""
    from pycocoevalcap.meteor.meteor import Meteor
    meteor = Meteor()
    try:
        corpus, per_image = meteor.compute_score(gts, res)
    finally:
        meteor.meteor_p.stdin.close()
        meteor.meteor_p.kill()
        meteor.meteor_p.wait()
    return {"METEOR": float(corpus)}, {"METEOR": np.asarray(per_image, dtype=np.float64)}


def coco_spice(gts: Captions, res: Captions) -> Result:
    """SPICE (Java; F-score of the "All" category), only when :func:`spice_unavailable` is None."""
    from pycocoevalcap.spice.spice import Spice
    corpus, per_image = Spice().compute_score(gts, res)
    return {"SPICE": float(corpus)}, {"SPICE": np.asarray([s["All"]["f"] for s in per_image], dtype=np.float64)}


COCO_SCORERS: dict[str, Callable[[Captions, Captions], Result]] = {
    "Bleu": coco_bleu, "METEOR": coco_meteor, "ROUGE_L": coco_rouge, "CIDEr": coco_cider, "SPICE": coco_spice,
}
