"""Vectorised n-gram counting shared by BLEU and CIDEr-D.

Sentences are split at whitespace (``str.split()``, as pycocoevalcap's BLEU and CIDEr split).
Every distinct 1..4-gram of the references gets an integer id; candidate sentences are encoded
against those ids with NumPy sorts and binary searches instead of dictionaries of tuples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Iterator, Sequence

import numpy as np

MAX_N = 4


@dataclass
class Ngrams:
    """Sparse n-gram counts of a list of sentences: one entry per (sentence, distinct n-gram)."""

    sentence: np.ndarray   # [E] int64 index of the sentence
    order: np.ndarray      # [E] int64 n-gram length minus one (0 = unigram)
    gram: np.ndarray       # [E] int64 id in the reference index, -1 for an n-gram no reference has
    count: np.ndarray      # [E] int64 occurrences in the sentence
    lengths: np.ndarray    # [S] int64 tokens per sentence


# whitespace str.split() splits at, other than space and line feed
_OTHER_SPACE = re.compile("[\t\r\x0b\x0c\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")


def split_tokens(sentences: Sequence[str | Sequence[str]]) -> tuple[list[str], np.ndarray]:
    """All tokens, flat, and the number per sentence; a string is split at whitespace, a list of
    tokens is taken as it is."""
    if all(isinstance(s, str) for s in sentences):
        joined = "\n".join(sentences)
        if (joined.count("\n") == len(sentences) - 1 and "  " not in joined and " \n" not in joined
                and "\n " not in joined and joined[:1] != " " and joined[-1:] != " " and not _OTHER_SPACE.search(joined)):
            # single spaces only (as the tokenizer writes): count them instead of splitting each
            spaces = np.fromiter(map(str.count, sentences, repeat(" ")), dtype=np.int64, count=len(sentences))
            chars = np.fromiter(map(len, sentences), dtype=np.int64, count=len(sentences))
            return joined.split(), np.where(chars > 0, spaces + 1, 0)
    lists = [s.split() if isinstance(s, str) else list(s) for s in sentences]
    lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    return list(chain.from_iterable(lists)), lengths


def _windows(n_words: int, lengths: np.ndarray) -> Iterator[np.ndarray]:
    """Per order n = 0..MAX_N-1, the positions where an n-gram starts (it ends at ``position + n``)."""
    ends = np.repeat(np.cumsum(lengths), lengths)           # [W] end (exclusive) of each word's sentence
    index = np.arange(n_words, dtype=np.int64)
    for n in range(MAX_N):
        yield index[index + n < ends]


def argsort_int(keys: np.ndarray) -> np.ndarray:
    """``np.argsort`` of non-negative int64 keys, via a plain sort of (key, index) packed in one
    int64 when they fit (several times faster than an indirect sort)."""
    n = len(keys)
    if not n:
        return np.zeros(0, dtype=np.int64)
    index_bits = int(n - 1).bit_length()
    if int(keys.max()).bit_length() + index_bits <= 62 and keys.min() >= 0:
        packed = np.sort((keys << index_bits) | np.arange(n, dtype=np.int64))
        return packed & ((1 << index_bits) - 1)
    return np.argsort(keys)


def _dense(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of ``keys`` and the index of each key among them."""
    order = argsort_int(keys)
    ordered = keys[order]
    new = np.empty(len(keys), dtype=bool)
    new[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    inverse = np.empty(len(keys), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return ordered[new], inverse


def _count(sentence: np.ndarray, local: np.ndarray, n_local: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (sentence, n-gram) pairs and their counts."""
    pair = np.sort(sentence * max(n_local, 1) + local)
    if not len(pair):
        return pair, pair, pair
    new = np.empty(len(pair), dtype=bool)
    new[0] = True
    np.not_equal(pair[1:], pair[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    count = np.diff(np.append(starts, len(pair)))
    pair = pair[starts]
    return pair // max(n_local, 1), pair % max(n_local, 1), count


class NgramIndex:
    """Ids for every 1..MAX_N-gram of a set of reference sentences.

    An n-gram's key is (id of its (n-1)-gram prefix) * vocabulary size + (id of its last word),
    so looking n-grams up is one ``searchsorted`` per order over sorted int64 keys.
    """

    def __init__(self, sentences: Sequence[str | Sequence[str]]):
        tokens, lengths = split_tokens(sentences)
        self.vocab: dict[str, int] = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
        words = np.fromiter(map(self.vocab.__getitem__, tokens), dtype=np.int64, count=len(tokens))
        self.keys: list[np.ndarray] = []          # per order, sorted keys of the known n-grams
        self.offsets: list[int] = []              # per order, global id of its first n-gram
        sentence_of = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        parts, total, local = [], 0, words
        for n, positions in enumerate(_windows(len(words), lengths)):
            last = words[positions + n]
            if n == 0:                            # word ids are dense already
                keys, inverse = np.arange(len(self.vocab), dtype=np.int64), last
            else:
                keys, inverse = _dense(local[positions] * len(self.vocab) + last)
            self.keys.append(keys)
            self.offsets.append(total)
            sentence, gram, count = _count(sentence_of[positions], inverse, len(keys))
            parts.append((sentence, np.full(len(sentence), n, dtype=np.int64), gram + total, count))
            total += len(keys)
            local = np.full(len(words), -1, dtype=np.int64)
            local[positions] = inverse
        self.size = total                         # number of distinct reference n-grams
        sentence, order, gram, count = (np.concatenate(x) for x in zip(*parts))
        self.references = Ngrams(sentence, order, gram, count, lengths)

    def encode(self, sentences: Sequence[str | Sequence[str]]) -> Ngrams:
        """Counts of the n-grams of ``sentences``, with ids of this index (-1 if unknown)."""
        tokens, lengths = split_tokens(sentences)
        ids = list(map(self.vocab.get, tokens))
        if None in ids:                            # unknown words still need an identity to be counted
            unknown: dict[str, int] = {}
            size = len(self.vocab)
            ids = [i if i is not None else size + unknown.setdefault(t, len(unknown)) for i, t in zip(ids, tokens)]
        words = np.array(ids, dtype=np.int64).reshape(-1)
        n_words = len(self.vocab)
        base = int(words.max()) + 1 if len(words) else 1
        sentence_of = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        parts = []
        local = ref = words
        for n, positions in enumerate(_windows(len(words), lengths)):
            # local: dense id of the n-gram within this batch; ref: its index in self.keys[n] or -1
            last = words[positions + n]
            if n == 0:
                n_local, local_n = base, last
                ref_n = np.where(last < n_words, last, -1)
            else:
                distinct, local_n = _dense(local[positions] * base + last)
                n_local = len(distinct)
                ref_n = self._lookup(n, ref[positions], last)
            by_local = np.full(n_local, -1, dtype=np.int64)
            by_local[local_n] = ref_n
            sentence, gram_local, count = _count(sentence_of[positions], local_n, n_local)
            gram = by_local[gram_local]
            parts.append((sentence, np.full(len(sentence), n, dtype=np.int64),
                          np.where(gram >= 0, gram + self.offsets[n], -1), count))
            local = np.full(len(words), -1, dtype=np.int64)
            ref = np.full(len(words), -1, dtype=np.int64)
            local[positions], ref[positions] = local_n, ref_n
        sentence, order, gram, count = (np.concatenate(x) for x in zip(*parts))
        return Ngrams(sentence, order, gram, count, lengths)

    def _lookup(self, n: int, prefix: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Index in ``self.keys[n]`` of the n-grams (prefix id in order n-1, last word), or -1."""
        keys, n_words = self.keys[n], len(self.vocab)
        found = np.full(len(prefix), -1, dtype=np.int64)
        candidates = np.flatnonzero((prefix >= 0) & (last < n_words))
        if len(candidates) and len(keys):
            key = prefix[candidates] * n_words + last[candidates]
            slot = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
            hit = keys[slot] == key
            found[candidates[hit]] = slot[hit]
        return found


class ReferenceSet:
    """Tokenized reference captions of a list of images, with the per-image n-gram statistics
    BLEU (largest count of each n-gram over an image's references) and CIDEr-D (document
    frequency: the number of images whose references hold an n-gram) need."""

    def __init__(self, references: Sequence[Sequence[str]]):
        self.n_images = len(references)
        self.n_refs = np.fromiter(map(len, references), dtype=np.int64, count=self.n_images)
        if self.n_images and self.n_refs.min() < 1:
            raise ValueError("every image needs at least one reference")
        self.first = (np.cumsum(self.n_refs) - self.n_refs).astype(np.int64)           # [I] first reference
        self.index = NgramIndex(list(chain.from_iterable(references)))
        refs = self.index.references
        self.lengths = refs.lengths                                                   # [R] tokens
        image = np.repeat(np.arange(self.n_images, dtype=np.int64), self.n_refs)[refs.sentence]
        key = self.image_key(image, refs.gram)
        order = argsort_int(key)
        # reference entries sorted by (image, n-gram)
        self.key = key[order]
        self.sentence = refs.sentence[order]
        self.order = refs.order[order]
        self.count = refs.count[order]
        self.gram = refs.gram[order]
        new = np.empty(len(self.key), dtype=bool)
        new[:1] = True
        np.not_equal(self.key[1:], self.key[:-1], out=new[1:])
        starts = np.flatnonzero(new)
        self.unique_key = self.key[starts]                                            # distinct (image, n-gram)
        self.starts = np.append(starts, len(self.key))                               # their entries: [s[i], s[i+1])
        self.max_count = np.maximum.reduceat(self.count, starts) if len(starts) else self.count[:0]
        self.df = np.bincount(self.gram[starts], minlength=self.index.size)           # images per n-gram

    def image_key(self, image: np.ndarray, gram: np.ndarray) -> np.ndarray:
        """The (image, n-gram) keys :attr:`key` is sorted by."""
        return image * max(self.index.size, 1) + gram

    def match(self, image: np.ndarray, candidates: Ngrams) -> np.ndarray:
        """For each candidate entry, its (image, n-gram) in :attr:`unique_key`, or -1 when no
        reference of the candidate's image ``image[sentence]`` holds the n-gram."""
        slot = np.full(len(candidates.gram), -1, dtype=np.int64)
        known = np.flatnonzero(candidates.gram >= 0)
        if len(known) and len(self.unique_key):
            key = self.image_key(image[candidates.sentence[known]], candidates.gram[known])
            found = np.minimum(np.searchsorted(self.unique_key, key), len(self.unique_key) - 1)
            hit = self.unique_key[found] == key
            slot[known[hit]] = found[hit]
        return slot
