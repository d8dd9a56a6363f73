"""Tokenization and the vocabulary (saved as JSON inside each run, never pickled)."""

from __future__ import annotations

import json
import os
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from nltk.tokenize import TreebankWordTokenizer

from lrcn.errors import CheckpointError
from lrcn.io import write_json

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)  # ids 0, 1, 2, 3

# Tokens the COCO caption evaluation (pycocoevalcap's PTBTokenizer) drops, plus the raw
# bracket forms that nltk's Treebank tokenizer leaves where Java writes -LRB- etc.
PUNCTUATION = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",",
                         ":", "-", "--", "...", ";", "(", ")", "[", "]", "{", "}", '"'])

_treebank = TreebankWordTokenizer()


def tokenize(text: str) -> list[str]:
    """Lower-cased PTB-style tokens with punctuation removed, as the COCO evaluation sees them."""
    text = unicodedata.normalize("NFKC", text).lower()
    return [t for t in _treebank.tokenize(text) if t not in PUNCTUATION]


class Vocabulary:
    """Word <-> id mapping with ``<pad>=0 <start>=1 <end>=2 <unk>=3``."""

    def __init__(self, words: Sequence[str]):
        if tuple(words[:4]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with {SPECIALS}")
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("duplicate words in vocabulary")

    pad, start, end, unk = 0, 1, 2, 3

    def __len__(self) -> int:
        return len(self.words)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.words == other.words

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1) -> "Vocabulary":
        """Words seen at least ``min_count`` times, most frequent first (ties alphabetical)."""
        counts = Counter(t for c in captions for t in tokenize(c))
        kept = sorted((w for w, n in counts.items() if n >= min_count and w not in SPECIALS),
                      key=lambda w: (-counts[w], w))
        return cls([*SPECIALS, *kept])

    def encode(self, text: str, max_len: int | None = None) -> list[int]:
        """Token ids of ``text`` (no start/end), truncated to ``max_len`` words."""
        ids = [self.index.get(t, self.unk) for t in tokenize(text)]
        return ids[:max_len] if max_len else ids

    def decode(self, ids: Iterable[int]) -> str:
        """Words of ``ids`` up to the first ``<end>``, skipping the other special tokens."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.end:
                break
            if i > self.unk or i == self.unk:
                words.append(self.words[i])
        return " ".join(words)

    def to_json(self) -> dict:
        return {"format": "lrcn-vocab-1", "words": self.words}

    @classmethod
    def from_json(cls, data: dict, source: str = "vocabulary") -> "Vocabulary":
        if not isinstance(data, dict) or data.get("format") != "lrcn-vocab-1" or not isinstance(data.get("words"), list):
            raise CheckpointError(f"{source} is not an lrcn vocabulary (expected format 'lrcn-vocab-1')")
        return cls(data["words"])

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, self.to_json(), indent=None)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocabulary":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"cannot read vocabulary {path}: {e}") from None
        return cls.from_json(data, str(path))
