"""Property tests: our PTB tokenizer equals the Java one, and our scorers equal pycocoevalcap's, on
generated text (random characters, words and punctuation)."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import lrcn.metrics as M
from lrcn.errors import DataError
from lrcn.metrics.ptb import ptb_tokenize_batch

FRAGMENTS = ["Mr.", "U.S.", "A.", "I.", "The", "etc.", "can't", "'s", "n't", "gonna", "cannot", "(", ")", "[", "]",
             "{", "}", '"', "'", "`", "--", "-", "...", ". . .", "&amp;", "<b>", "1/2", "5 7/8", "3.5", "1,000",
             "$5", "£", "€", "½", ":)", "www.x.com", "a@b.org", "co-op", "x-ray", "é", "Σ", "ς", "“", "”", "’",
             "—", "…", "\u00a0", "\u00ad", "\t", "😀", "dog", "a", "man", "on", "grass", "?", "!", ",", ";", ":"]
caption = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)), max_size=12).map(" ".join)


@pytest.mark.skipif(shutil.which("java") is None, reason="java not on PATH")
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(caption, min_size=1, max_size=300))
def test_tokenizer_equals_java(captions):
    assert ptb_tokenize_batch(captions) == ptb_tokenize_batch(captions, backend="java")


words = st.lists(st.sampled_from("a the dog dogs cat on in red big runs x y z".split()), max_size=20).map(" ".join)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(words, st.lists(words, min_size=1, max_size=5)), min_size=1, max_size=12))
def test_scores_equal_pycocoevalcap(images):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    cands = {i: c for i, (c, _) in enumerate(images)}
    refs = {i: r for i, (_, r) in enumerate(images)}
    if any(not any(refs[i]) for i in refs):                 # all references of an image empty: an error
        with pytest.raises(DataError, match="no non-empty reference"):
            M.score(cands, refs)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                      # "empty reference captions" warnings
        ours = M.score(cands, refs, metrics=["Bleu", "ROUGE_L", "CIDEr"])
    gts, res = refs, {i: [c] for i, c in cands.items()}
    bleu, bleu_per = Bleu(4).compute_score(gts, res, verbose=0)
    for k in range(4):
        assert ours.corpus[f"Bleu_{k + 1}"] == pytest.approx(bleu[k], abs=1e-9)
        np.testing.assert_allclose([ours.per_image[i][f"Bleu_{k + 1}"] for i in cands], bleu_per[k], atol=1e-9, rtol=0)
    for name, scorer in (("ROUGE_L", Rouge()), ("CIDEr", Cider())):
        corpus, per = scorer.compute_score(gts, res)
        assert ours.corpus[name] == pytest.approx(corpus, abs=1e-9)
        np.testing.assert_allclose([ours.per_image[i][name] for i in cands], per, atol=1e-9, rtol=0)
