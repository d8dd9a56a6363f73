"""Our BLEU + CIDEr-D (and tokenizer, ROUGE-L) against pycocoevalcap's, side by side in one run.

1. 5000 images x 5 generated reference captions + 1 generated candidate each, PTB-tokenized once;
   pycocoevalcap's ``Bleu(4)`` + ``Cider()`` against ours on the same tokens: times, ratio and the
   largest absolute difference over every corpus and per-image score. ROUGE-L likewise.
2. Tokenization of the same 30,000 captions: pycocoevalcap's Java PTBTokenizer against ours.
3. Real captions (Flickr8k's Flickr8k.token.txt): the number of captions our tokenizer tokenizes
   differently from the Java one (the goal is zero).

    python -m experiments.benchmarks.metrics_speed [FLICKR8K_TOKEN_TXT] [--images 5000] [--refs 5]

FLICKR8K_TOKEN_TXT defaults to ../shared/data/flickr8k-mini/Flickr8k.token.txt beside the repository.
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from pathlib import Path

import numpy as np

from lrcn.metrics.ptb import ptb_tokenize_batch
from lrcn.metrics.scoring import fast_scores

DEFAULT_CAPTIONS = Path(__file__).resolve().parents[2] / "../shared/data/flickr8k-mini/Flickr8k.token.txt"

SUBJECTS = ["man", "woman", "boy", "girl", "dog", "cat", "child", "person", "group of people", "player", "horse",
            "surfer", "skier", "couple", "bird", "baby", "crowd", "team", "biker", "cow"]
ADJECTIVES = ["", "", "young", "old", "small", "big", "black", "white", "brown", "red", "happy", "little", "tall"]
VERBS = ["is riding", "rides", "is sitting on", "sits on", "is standing near", "plays with", "is holding",
         "is running across", "jumps over", "walks along", "is looking at", "is eating", "throws", "catches",
         "is lying on", "carries"]
OBJECTS = ["a bike", "the beach", "a bench", "a red ball", "the grass", "a surfboard", "the street", "a frisbee",
           "a skateboard", "the snow", "a table", "a pizza", "the water", "a fence", "a tree", "the field",
           "a wave", "a horse", "a kite", "a building"]
TAILS = ["", "", "", " in the park", " on a sunny day", " at night", " next to a car", " with a friend",
         " in front of a crowd", " near the ocean", ", smiling", " while others watch"]
ENDINGS = ["", "", ".", " .", "!", "."]


def caption(r: random.Random) -> str:
    adjective = r.choice(ADJECTIVES)
    text = f"{r.choice(['A', 'a', 'The', 'One'])} {adjective + ' ' if adjective else ''}{r.choice(SUBJECTS)} " \
           f"{r.choice(VERBS)} {r.choice(OBJECTS)}{r.choice(TAILS)}{r.choice(ENDINGS)}"
    if r.random() < 0.1:
        text = text.replace(" is ", "'s ", 1)
    if r.random() < 0.05:
        text += f" ({r.choice(SUBJECTS)})"
    return text


def timed(fn, repeat: int = 1):
    """(result of the last call, fastest time in seconds)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


def pycoco_bleu_cider(gts: dict, res: dict) -> dict[str, tuple[float, np.ndarray]]:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    bleu, bleu_per = Bleu(4).compute_score(gts, res, verbose=0)
    cider, cider_per = Cider().compute_score(gts, res)
    out = {f"Bleu_{k + 1}": (bleu[k], np.asarray(bleu_per[k])) for k in range(4)}
    out["CIDEr"] = (cider, np.asarray(cider_per))
    return out


def ours(groups: list[str], cands: list[str], refs: list[list[str]]) -> dict[str, tuple[float, np.ndarray]]:
    corpus, per = fast_scores(groups, cands, refs)
    return {m: (corpus[m], per[m]) for m in corpus}


def largest_difference(a: dict, b: dict) -> float:
    return max(max(abs(a[m][0] - b[m][0]), float(np.max(np.abs(a[m][1] - b[m][1])))) for m in a)


def read_flickr_captions(path: Path) -> list[str]:
    return [line.split("\t", 1)[1].rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines()
            if "\t" in line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("captions", nargs="?", default=str(DEFAULT_CAPTIONS), help="Flickr8k.token.txt")
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--refs", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3, help="runs of ours; the fastest is reported")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    java = shutil.which("java") is not None

    r = random.Random(args.seed)
    refs_raw = [[caption(r) for _ in range(args.refs)] for _ in range(args.images)]
    cands_raw = [caption(r) for _ in range(args.images)]
    flat = ptb_tokenize_batch([c for rs in refs_raw for c in rs])
    refs = [flat[i * args.refs:(i + 1) * args.refs] for i in range(args.images)]
    cands = ptb_tokenize_batch(cands_raw)
    gts = dict(enumerate(refs))
    res = {i: [c] for i, c in enumerate(cands)}

    print(f"== BLEU-1..4 + CIDEr-D, {args.images} images x {args.refs} references (tokenized once) ==")
    theirs, t_theirs = timed(lambda: pycoco_bleu_cider(gts, res))
    mine, t_mine = timed(lambda: ours(["Bleu", "CIDEr"], cands, refs), args.repeat)
    print(f"pycocoevalcap Bleu+Cider  {t_theirs:8.3f} s")
    print(f"ours          BLEU+CIDEr  {t_mine:8.3f} s   (fastest of {args.repeat})")
    print(f"ratio                     {t_theirs / t_mine:8.1f} x")
    print(f"largest |difference|      {largest_difference(theirs, mine):.3g}   (corpus and per-image, 5 metrics)")
    print("corpus: " + "  ".join(f"{m} {v[0]:.4f}" for m, v in mine.items()))

    from pycocoevalcap.rouge.rouge import Rouge
    (rouge, rouge_per), t_rouge = timed(lambda: Rouge().compute_score(gts, res))
    mine_rouge, t_mine_rouge = timed(lambda: ours(["ROUGE_L"], cands, refs), args.repeat)
    diff = max(abs(rouge - mine_rouge["ROUGE_L"][0]), float(np.max(np.abs(rouge_per - mine_rouge["ROUGE_L"][1]))))
    print(f"\n== ROUGE-L ==\npycocoevalcap {t_rouge:.3f} s, ours {t_mine_rouge:.3f} s, ratio {t_rouge / t_mine_rouge:.1f} x, "
          f"largest |difference| {diff:.3g}")

    everything = [c for rs in refs_raw for c in rs] + cands_raw
    print(f"\n== PTB tokenization of the {len(everything)} generated captions ==")
    from lrcn.metrics.ptb import _lexer, _tokenize_text
    _lexer.cache_clear()
    _tokenize_text.cache_clear()
    _, t_cold = timed(lambda: ptb_tokenize_batch(everything))
    _tokenize_text.cache_clear()
    _, t_warm = timed(lambda: ptb_tokenize_batch(everything))
    print(f"ours: {t_cold:.3f} s (first call, includes reading the scanner tables from the jar), {t_warm:.3f} s "
          "(again, words seen before; the same text a third time comes from a cache)")
    if java:
        java_out, t_java = timed(lambda: ptb_tokenize_batch(everything, backend="java"))
        print(f"java: {t_java:.3f} s (pycocoevalcap's PTBTokenizer), ratio {t_java / t_warm:.1f} x; "
              f"differing captions {sum(a != b for a, b in zip(java_out, ptb_tokenize_batch(everything)))}")

    path = Path(args.captions)
    print(f"\n== Real captions: {path} ==")
    if not path.exists():
        print("not found; pass the path of Flickr8k.token.txt")
    elif not java:
        print("java not on PATH: cannot run the Java tokenizer to compare with")
    else:
        real = read_flickr_captions(path)
        java_tokens = ptb_tokenize_batch(real, backend="java")
        our_tokens = ptb_tokenize_batch(real)
        differing = [(c, a, b) for c, a, b in zip(real, java_tokens, our_tokens) if a != b]
        print(f"{len(real)} captions, {len(differing)} tokenized differently from the Java PTBTokenizer")
        for c, a, b in differing[:10]:
            print(f"  {c!r}\n    java {a!r}\n    ours {b!r}")


if __name__ == "__main__":
    main()
