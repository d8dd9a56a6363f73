"""COCO caption evaluation: exact BLEU-1..4, METEOR, ROUGE-L, CIDEr-D and SPICE, corpus and per
image, with a fast pure-Python/NumPy backend equal to pycocoevalcap (its reference backend)."""

from lrcn.metrics.cider import CiderD
from lrcn.metrics.diversity import diversity, mbleu4
from lrcn.metrics.formats import load_references, load_results, score_files, write_results
from lrcn.metrics.ptb import PUNCTUATIONS, java_available, ptb_tokenize, ptb_tokenize_batch
from lrcn.metrics.report import format_table, markdown_table, save_scores
from lrcn.metrics.scoring import BACKENDS, METRICS, Scores, resolve_metrics, score

__all__ = [
    "BACKENDS", "METRICS", "PUNCTUATIONS", "CiderD", "Scores", "diversity",
    "format_table", "java_available", "load_references", "load_results", "markdown_table", "mbleu4",
    "ptb_tokenize", "ptb_tokenize_batch", "resolve_metrics", "save_scores", "score", "score_files",
    "write_results",
]
