"""CIDEr-D exactly as pycocoevalcap's ``Cider`` computes it (its ``Cider`` class is CIDEr-D),
vectorised, with document frequencies computed once for scoring many candidate batches."""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import numpy as np

from lrcn.errors import DataError
from lrcn.metrics.ngrams import MAX_N, Ngrams, ReferenceSet
from lrcn.metrics.ptb import ptb_tokenize_batch


class CiderD:
    """CIDEr-D of candidate captions against fixed references.

    As in pycocoevalcap (cider/cider_scorer.py): TF-IDF vectors of 1..4-grams with document
    frequencies counted over the references of all images given here and ``log(number of
    images)`` as the reference length; per order, the cosine of the candidate with each reference
    after clipping the candidate's weights at the reference's (``min(c, r) * r``), times a Gaussian
    length penalty ``exp(-delta**2 / (2 * sigma**2))`` where ``delta`` is the difference in bigram
    counts; the mean over orders and references, times 10. Built with the references of exactly
    the images being scored, :meth:`compute` equals pycocoevalcap; built with a training set's
    references, :meth:`score_batch` gives self-critical training rewards against fixed document
    frequencies. (With a single image, log(1) = 0 makes every weight, and so CIDEr-D, zero.)

    ``tokenize=True`` runs references and candidates through the COCO evaluation's PTB tokenizer;
    with ``tokenize=False`` they must already be space-separated tokens (faster for training).
    """

    def __init__(self, references: Mapping[Hashable, Sequence[str]], *, sigma: float = 6.0, tokenize: bool = True):
        self.sigma = sigma
        self.tokenize = tokenize
        self.image_ids = list(references)
        self.position = {image_id: i for i, image_id in enumerate(self.image_ids)}
        refs = [list(references[i]) for i in self.image_ids]
        for image_id, r in zip(self.image_ids, refs):
            if not r:
                raise DataError(f"image {image_id!r} has no reference captions")
        if tokenize:
            flat = ptb_tokenize_batch([c for r in refs for c in r])
            it = iter(flat)
            refs = [[next(it) for _ in r] for r in refs]
        self.refs = ReferenceSet(refs)
        self.ref_len = float(np.log(float(max(len(self.image_ids), 1))))
        self.idf = self.ref_len - np.log(np.maximum(1.0, self.refs.df.astype(np.float64)))    # [G]
        r = self.refs
        self.ref_weight = r.count * self.idf[r.gram]                      # per sorted reference entry
        n_sent = len(r.lengths)
        self.ref_norm = np.sqrt(np.bincount(r.sentence * MAX_N + r.order, weights=self.ref_weight ** 2,
                                            minlength=n_sent * MAX_N)).reshape(n_sent, MAX_N)
        self.ref_bigrams = np.maximum(r.lengths - 1, 0)                    # pycocoevalcap's "length"

    def _images(self, image_ids: Sequence[Hashable]) -> np.ndarray:
        try:
            return np.fromiter((self.position[i] for i in image_ids), dtype=np.int64, count=len(image_ids))
        except KeyError as e:
            raise DataError(f"image id {e.args[0]!r} has no references in this CiderD scorer") from None

    def score_batch(self, image_ids: Sequence[Hashable], captions: Sequence[str | Sequence[str]]) -> np.ndarray:
        """CIDEr-D of ``captions[k]`` against the references of ``image_ids[k]``: ``[K]`` float64.
        A caption may be a string or a list of tokens (never tokenized again)."""
        if len(image_ids) != len(captions):
            raise ValueError(f"{len(image_ids)} image ids for {len(captions)} captions")
        image = self._images(image_ids)
        as_text = [i for i, c in enumerate(captions) if isinstance(c, str)]
        tokens: list = [c if not isinstance(c, str) else None for c in captions]
        if as_text:
            texts = [captions[i] for i in as_text]
            if self.tokenize:
                texts = ptb_tokenize_batch(texts)
            for i, t in zip(as_text, texts):
                tokens[i] = t.split()
        return self.score_ngrams(image, self.refs.index.encode(tokens))

    def compute(self, candidates: Mapping[Hashable, str]) -> tuple[float, np.ndarray]:
        """Corpus CIDEr-D (the mean) and per-image scores, in the order of ``candidates``."""
        ids = list(candidates)
        scores = self.score_batch(ids, [candidates[i] for i in ids])
        return (float(np.mean(scores)) if len(scores) else 0.0), scores

    def score_ngrams(self, image: np.ndarray, cand: Ngrams, slot: np.ndarray | None = None) -> np.ndarray:
        """CIDEr-D of encoded candidates (``self.refs.index.encode``) for image positions ``image``;
        ``slot`` is ``self.refs.match(image, cand)`` if already computed."""
        r = self.refs
        n_cand = len(image)
        slot = r.match(image, cand) if slot is None else slot
        idf = np.where(cand.gram >= 0, self.idf[np.maximum(cand.gram, 0)], self.ref_len)
        weight = cand.count * idf
        norm = np.sqrt(np.bincount(cand.sentence * MAX_N + cand.order, weights=weight ** 2,
                                   minlength=n_cand * MAX_N)).reshape(n_cand, MAX_N)
        # every (candidate n-gram, reference of its image holding it) pair
        matched = np.flatnonzero(slot >= 0)
        lo = r.starts[slot[matched]]
        n_match = r.starts[slot[matched] + 1] - lo
        pair_of = np.repeat(matched, n_match)
        ref_entry = np.repeat(lo - np.cumsum(n_match) + n_match, n_match) + np.arange(int(n_match.sum()))
        ref_weight = self.ref_weight[ref_entry]
        clipped = np.minimum(weight[pair_of], ref_weight) * ref_weight
        cand_of = cand.sentence[pair_of]
        max_refs = int(r.n_refs[image].max(initial=1))
        ref_slot = r.sentence[ref_entry] - r.first[image[cand_of]]               # reference within its image
        dot = np.bincount((cand_of * max_refs + ref_slot) * MAX_N + cand.order[pair_of], weights=clipped,
                          minlength=n_cand * max_refs * MAX_N).reshape(n_cand, max_refs, MAX_N)
        # norms, lengths and validity of each (candidate, reference slot)
        slots = np.arange(max_refs)[None, :]
        valid = slots < r.n_refs[image][:, None]                                  # [C, maxR]
        ref_index = np.where(valid, r.first[image][:, None] + slots, 0)
        ref_norm = self.ref_norm[ref_index]                                       # [C, maxR, 4]
        both = (norm[:, None, :] != 0) & (ref_norm != 0)
        val = np.where(both, dot / np.where(both, norm[:, None, :] * ref_norm, 1.0), dot)
        delta = (np.maximum(cand.lengths - 1, 0)[:, None] - self.ref_bigrams[ref_index]).astype(np.float64)
        val = val * (np.e ** (-(delta ** 2) / (2 * self.sigma ** 2)))[:, :, None]
        val = np.where(valid[:, :, None], val, 0.0)
        return val.sum(axis=1).mean(axis=1) / r.n_refs[image] * 10.0
