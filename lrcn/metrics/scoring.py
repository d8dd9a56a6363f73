"""``score()``: COCO caption metrics of candidate captions against references, corpus and per image.

Input rules (each one raises :class:`~lrcn.errors.DataError` naming the image, or is applied as
written here, with a warning):

* a candidate must be a string; an empty or whitespace-only candidate is scored as the empty
  caption, as pycocoevalcap scores it (0 on every metric unless a reference is empty too);
* every candidate image id must have references; reference images without a candidate are left
  out (a warning says how many, ``require_all=True`` makes it an error). CIDEr-D's document
  frequencies are computed over the scored images only, as in pycocoevalcap;
* references are a list of strings per image; one reference is fine; an empty or whitespace-only
  reference is kept and scored as pycocoevalcap scores it (a warning names the images), but an
  image whose references are all empty is an error;
* line breaks inside captions become spaces, lone surrogates U+FFFD; non-ASCII text is
  tokenized as the Java PTB tokenizer does it (e.g. emoji standing alone are deleted).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Hashable, Mapping, Sequence

import numpy as np

from lrcn.errors import ConfigError, DataError
from lrcn.metrics.cider import CiderD
from lrcn.metrics.bleu import bleu
from lrcn.metrics.coco import BLEU_NAMES, COCO_SCORERS, Captions, Result, spice_unavailable
from lrcn.metrics.ptb import java_available, ptb_tokenize_batch
from lrcn.metrics.rouge import rouge_l

METRICS = (*BLEU_NAMES, "METEOR", "ROUGE_L", "CIDEr", "SPICE")
_ALIASES = {"bleu": BLEU_NAMES, **{name.lower(): (name,) for name in METRICS},
            "rouge": ("ROUGE_L",), "rouge-l": ("ROUGE_L",), "cider-d": ("CIDEr",), "cider_d": ("CIDEr",),
            "ciderd": ("CIDEr",)}
_GROUP = {**{name: "Bleu" for name in BLEU_NAMES}, "METEOR": "METEOR", "ROUGE_L": "ROUGE_L", "CIDEr": "CIDEr",
          "SPICE": "SPICE"}
BACKENDS = ("fast", "coco")


@dataclass
class Scores:
    """Corpus and per-image scores under pycocoevalcap's metric names."""

    corpus: dict[str, float]                              # e.g. {"Bleu_4": 0.31, "CIDEr": 0.98}
    per_image: dict[Hashable, dict[str, float]]           # image id -> metric -> score
    skipped: dict[str, str] = field(default_factory=dict)  # metric -> why it was not computed
    backend: str = "fast"


def resolve_metrics(metrics: Sequence[str] | str | None, spice: bool | None = None) -> list[str]:
    """pycocoevalcap names of the metrics asked for: names or aliases (``"Bleu"`` = Bleu_1..4,
    ``"ROUGE"``, ``"CIDEr-D"`` ...), case-insensitive; None = all (SPICE as ``spice`` says)."""
    if metrics is None:
        names = [m for m in METRICS if m != "SPICE" or spice is not False]
    else:
        names = []
        for m in [metrics] if isinstance(metrics, str) else metrics:
            if str(m).lower() not in _ALIASES:
                raise ConfigError(f"unknown metric {m!r}; choose from {', '.join(METRICS)} (or Bleu for all four)")
            names += [n for n in _ALIASES[str(m).lower()] if n not in names]
        if spice and "SPICE" not in names:
            names.append("SPICE")
        if spice is False and "SPICE" in names:
            names.remove("SPICE")
    return [m for m in METRICS if m in names]


def _validated(candidates: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]],
               require_all: bool) -> tuple[list[Hashable], list[str], list[list[str]]]:
    """Image ids, candidates and references after the rules of the module docstring."""
    if not isinstance(candidates, Mapping) or not isinstance(references, Mapping):
        raise TypeError("candidates and references must be mappings from image id to caption(s)")
    if not candidates:
        raise DataError("no candidate captions to score")
    ids = list(candidates)
    missing = [i for i in ids if i not in references]
    if missing:
        by_text = {str(k): k for k in references}
        hint = ""
        if any(str(i) in by_text for i in missing):
            i = next(i for i in missing if str(i) in by_text)
            hint = (f" (the references have {by_text[str(i)]!r} of type {type(by_text[str(i)]).__name__}: "
                    f"image ids must have the same type in both)")
        raise DataError(f"{len(missing)} candidate image id(s) have no references, e.g. {missing[:5]!r}{hint}")
    extra = len(references) - len(ids)
    if extra and require_all:
        absent = [k for k in references if k not in candidates]
        raise DataError(f"{len(absent)} reference image(s) have no candidate caption, e.g. {absent[:5]!r}")
    cands, refs, empty = [], [], []
    for i in ids:
        c = candidates[i]
        if not isinstance(c, str):
            raise DataError(f"the caption of image {i!r} is a {type(c).__name__}, not a string")
        r = references[i]
        if isinstance(r, str) or not isinstance(r, Sequence):
            raise DataError(f"the references of image {i!r} must be a list of captions, not a {type(r).__name__}")
        for ref in r:
            if not isinstance(ref, str):
                raise DataError(f"a reference of image {i!r} is a {type(ref).__name__}, not a string")
        if not any(ref.strip() for ref in r):
            raise DataError(f"image {i!r} has no non-empty reference caption")
        if not all(ref.strip() for ref in r):
            empty.append(i)
        cands.append(c)
        refs.append(list(r))
    if extra:
        warnings.warn(f"scoring {len(ids)} images with candidates; {extra} reference image(s) without a candidate "
                      "are left out", RuntimeWarning, stacklevel=3)
    if empty:
        warnings.warn(f"{len(empty)} image(s) have empty reference captions, e.g. {empty[:5]!r}; they are scored "
                      "as pycocoevalcap scores them (an empty reference counts as one)", RuntimeWarning, stacklevel=3)
    return ids, cands, refs


def _tokenized(cands: list[str], refs: list[list[str]], tokenizer: str) -> tuple[list[str], list[list[str]]]:
    """Tokenized references and candidates, each as one text as pycocoevalcap does (references first)."""
    flat = iter(ptb_tokenize_batch([c for r in refs for c in r], backend=tokenizer))
    refs_tok = [[next(flat) for _ in r] for r in refs]
    return ptb_tokenize_batch(cands, backend=tokenizer), refs_tok


def fast_scores(groups: list[str], cands: list[str], refs: list[list[str]]) -> Result:
    """Our BLEU, CIDEr-D and ROUGE-L of tokenized captions (groups: "Bleu", "CIDEr", "ROUGE_L"),
    identical to pycocoevalcap's: (corpus scores, per-image arrays)."""
    corpus: dict[str, float] = {}
    per: dict[str, np.ndarray] = {}
    if "Bleu" in groups or "CIDEr" in groups:
        scorer = CiderD(dict(enumerate(refs)), tokenize=False)
        image = np.arange(len(cands))
        encoded = scorer.refs.index.encode(cands)
        slot = scorer.refs.match(image, encoded)
        if "Bleu" in groups:
            total, per_bleu = bleu(scorer.refs, image, encoded, slot)
            corpus.update(zip(BLEU_NAMES, total))
            per.update(zip(BLEU_NAMES, per_bleu.T))
        if "CIDEr" in groups:
            per["CIDEr"] = scorer.score_ngrams(image, encoded, slot)
            corpus["CIDEr"] = float(np.mean(per["CIDEr"]))
    if "ROUGE_L" in groups:
        per["ROUGE_L"] = rouge_l(cands, refs)
        corpus["ROUGE_L"] = float(np.mean(per["ROUGE_L"]))
    return corpus, per


def _unavailable(group: str) -> str | None:
    """Why a scorer cannot run here (METEOR and SPICE need Java, SPICE also its models), or None."""
    if group == "SPICE":
        return spice_unavailable()
    if group in _NEEDS_JAVA and not java_available():
        return "java not found on PATH"
    return None


_NEEDS_JAVA = frozenset(["METEOR", "SPICE"])


def score(candidates: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]], *,
          metrics: Sequence[str] | str | None = None, backend: str = "fast", spice: bool | None = None,
          require_all: bool = False) -> Scores:
    """COCO caption scores of ``candidates`` (image id -> caption) against ``references`` (image id
    -> captions), corpus-level and per image, under pycocoevalcap's names (Bleu_1..Bleu_4, METEOR,
    ROUGE_L, CIDEr, SPICE).

    ``backend="fast"``: our tokenizer, BLEU, CIDEr-D and ROUGE-L (equal to pycocoevalcap's to
    1e-9), pycocoevalcap's METEOR. ``backend="coco"``: pycocoevalcap's PTBTokenizer and scorers.
    METEOR and SPICE need Java; without it they are skipped with a warning (see
    ``Scores.skipped``) and everything else is still computed. SPICE also needs its Stanford
    models: ``spice=None`` computes it when they are present, ``True`` asks for it (a warning if
    it cannot run), ``False`` leaves it out. Input rules: see this module's docstring.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown scoring backend {backend!r}; use one of {', '.join(BACKENDS)}")
    names = resolve_metrics(metrics, spice)
    ids, cands, refs = _validated(candidates, references, require_all)
    groups = list(dict.fromkeys(_GROUP[m] for m in names))
    spice_asked = spice is True or (metrics is not None and "SPICE" in resolve_metrics(metrics, None))

    tokenizer = "python"
    if backend == "coco":
        if java_available():
            tokenizer = "java"
        else:
            warnings.warn("java not found on PATH: the coco backend tokenizes with the pure-Python PTB tokenizer "
                          "(identical output)", RuntimeWarning, stacklevel=2)
    cands_tok, refs_tok = _tokenized(cands, refs, tokenizer)

    corpus, per = fast_scores(groups, cands_tok, refs_tok) if backend == "fast" else ({}, {})
    gts: Captions = dict(enumerate(refs_tok))               # pycocoevalcap's input, keyed by position
    res: Captions = {k: [c] for k, c in enumerate(cands_tok)}
    skipped: dict[str, str] = {}
    for group in [g for g in groups if backend == "coco" or g in _NEEDS_JAVA]:
        reason = _unavailable(group)
        if reason is None:
            try:
                c, p = COCO_SCORERS[group](gts, res)
                corpus.update(c)
                per.update(p)
                continue
            except Exception as e:  # a Java scorer that crashes must not take the other scores with it
                if group not in _NEEDS_JAVA:
                    raise
                reason = f"failed: {type(e).__name__}: {e}"
        skipped[group] = reason
        if group != "SPICE" or spice_asked:
            warnings.warn(f"{group} skipped: {reason}", RuntimeWarning, stacklevel=2)
    order = [m for m in names if m in corpus]
    per_image = {image_id: {m: float(per[m][k]) for m in order} for k, image_id in enumerate(ids)}
    return Scores({m: corpus[m] for m in order}, per_image, skipped, backend)
