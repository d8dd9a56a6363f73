"""`lrcn score RESULTS.json --refs ANNOTATIONS.json`: score a COCO results file."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from lrcn.io import write_json, write_text
from lrcn.metrics.formats import finite_or_none, json_image_id, score_files
from lrcn.metrics.report import format_table, markdown_table
from lrcn.metrics.scoring import BACKENDS, METRICS


def register(sub) -> None:
    s = sub.add_parser("score", help="score a COCO results file against COCO-format references")
    add_score_arguments(s)
    s.set_defaults(func=run_score)


def add_score_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``lrcn score``."""
    parser.add_argument("results", metavar="RESULTS.json", help='[{"image_id": ..., "caption": ...}, ...]')
    parser.add_argument("--refs", required=True, metavar="ANNOTATIONS.json",
                        help='COCO captions annotations {"images": [...], "annotations": [...]} or a Karpathy split file')
    parser.add_argument("--split", help="with a Karpathy split file: score against this split's images only")
    parser.add_argument("--json", metavar="OUT", help="write the corpus scores here (pycocoevalcap's metric names)")
    parser.add_argument("--per-image", metavar="OUT", help='write [{"image_id": ..., metric: score}, ...] here')
    parser.add_argument("--markdown", metavar="OUT", help="write the table as Markdown here")
    parser.add_argument("--backend", default="fast", choices=BACKENDS,
                        help="fast: our tokenizer, BLEU, CIDEr-D, ROUGE-L; coco: pycocoevalcap's (default fast)")
    parser.add_argument("--metrics", nargs="+", metavar="NAME",
                        help=f"some of {', '.join(METRICS)} (Bleu = all four); default all")
    parser.add_argument("--spice", action=argparse.BooleanOptionalAction, default=None,
                        help="compute SPICE (default: when its jar and Stanford models are installed)")
    parser.add_argument("--require-all", action="store_true",
                        help="fail when a reference image has no caption in the results (default: score the others)")


def run_score(args: argparse.Namespace) -> int:
    """Run ``lrcn score``: print the table, write the requested files; LrcnError on bad input."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = score_files(args.results, args.refs, split=args.split, metrics=args.metrics, backend=args.backend,
                             spice=args.spice, require_all=args.require_all)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    for metric, reason in scores.skipped.items():
        if not any(f"{metric} skipped" in str(w.message) for w in caught):
            print(f"note: {metric} not computed: {reason}", file=sys.stderr)
    name = Path(args.results).stem
    print(format_table({name: scores.corpus}))
    print(f"({len(scores.per_image)} images, backend {scores.backend})")
    if args.json:
        write_json(args.json, {m: finite_or_none(v) for m, v in scores.corpus.items()})
    if args.per_image:
        write_json(args.per_image, [{"image_id": json_image_id(i), **{m: finite_or_none(v) for m, v in s.items()}}
                                    for i, s in scores.per_image.items()])
    if args.markdown:
        write_text(args.markdown, markdown_table({name: scores.corpus}) + "\n")
    return 0
