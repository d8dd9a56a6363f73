"""lrcn.metrics: exact agreement with pycocoevalcap (and its Java tokenizer), input rules, formats,
reports and the `lrcn score` command."""

from __future__ import annotations

import json
import math
import random
import shutil
import warnings

import numpy as np
import pytest

import lrcn.metrics as M
from lrcn.cli import main
from lrcn.errors import ConfigError, DataError
from lrcn.metrics.ptb import ptb_tokenize_batch
from lrcn.metrics.rouge import lcs_length, rouge_l

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="java not on PATH")

WORDS = ("a an the man woman child dog cat horse red blue green big small young old on in with of at near "
         "riding playing sitting standing jumping running two three grass water beach street field ball "
         "frisbee bike surfboard snow table pizza").split()
PUNCT = [".", ",", "!", "?", "'s", "n't", "(", ")", '"', "-", "...", ";", ":", "'", "--", "&", "/"]

# real-looking captions with the things tokenizers disagree about
ENGLISH = [
    "A man in a red shirt is riding a bike down the street.",
    "Two dogs play with a frisbee on the beach .",
    "A woman (wearing a hat) sits on a bench; she's reading.",
    "The U.S. flag flies over a building. The sky is blue.",
    "Mr. Smith and Dr. Jones walk past St. Paul's cathedral, etc.",
    "A child can't reach the cookie jar -- it's too high!",
    "\"Look at that,\" says the girl to her mom.",
    "A black-and-white photo of a 10-year-old boy in the 1990s.",
    "A pizza with 1/2 pepperoni and ½ cheese costs $5.99 or £4.",
    "Café patrons enjoy crêpes and naïve art in Zürich.",
    "A dog 🐶 runs on the grass 🌿 with a ball.",
    "Someone wrote www.example.com and mail@example.org on the wall...",
    "A man's hand holds a phone: (555) 123-4567.",
    "People gonna wanna see this, cannot miss it, gotta go.",
    "A girl says 'hi' to the boys' team at 3:30 p.m.",
    "ΟΔΟΣ sign and a ΣΟΦΙΑ poster near the uw3Σ building.",
    "I. M. Pei designed it. A. The end",
    "grade A.",
    "The dog’s ball is “red” — isn’t it?",
    "   ",
    "",
    "...",
    "A [big] {red} <b>box</b> with **stars** & ~tildes~ | pipes",
]


def random_caption(r: random.Random, lo: int = 1, hi: int = 14) -> str:
    out = []
    for _ in range(r.randint(lo, hi)):
        word = r.choice(WORDS)
        out.append(word.capitalize() if r.random() < 0.1 else word)
        if r.random() < 0.15:
            out.append(r.choice(PUNCT))
    return " ".join(out)


def random_sets(seed: int, n_images: int, refs: tuple[int, int] = (1, 6), p_empty: float = 0.05):
    r = random.Random(seed)
    references = {i: [random_caption(r) for _ in range(r.randint(*refs))] for i in range(n_images)}
    candidates = {i: ("" if r.random() < p_empty else random_caption(r)) for i in range(n_images)}
    return candidates, references


# --------------------------------------------------------------------------------------------
# PTB tokenizer
# --------------------------------------------------------------------------------------------

def test_ptb_tokenize_known_outputs():
    expected = {
        "A man (in a red shirt) isn't here.": "a man -lrb- in a red shirt -rrb- is n't here",
        "The dog's toy; it's \"red\"!": "the dog 's toy it 's red",
        "Mr. Smith visits the U.S. today.": "mr. smith visits the u.s. today",
        "cannot gonna 'tis": "can not gon na 't is",
        "A [big] {box}": "a -lsb- big -rsb- -lcb- box -rcb-",
        "½ cup costs £3 or ¢5 -- ok": "1/2 cup costs # 3 or cents 5 ok",
        "A dog 🐶 runs": "a dog runs",
        "   ": "",
        "...": "",
        "x ||| y": "x | | | y",
    }
    assert ptb_tokenize_batch(list(expected)) == list(expected.values())
    assert M.ptb_tokenize("Hello, World.") == "hello world"


def test_ptb_context_crosses_captions():
    # a one-letter acronym before "The" on the next line loses its period, as in Java
    assert ptb_tokenize_batch(["grade A.", "The dog"]) == ["grade a", "the dog"]
    assert ptb_tokenize_batch(["grade A.", "a dog"]) == ["grade a.", "a dog"]
    # and the memo of chunks seen before must not change that
    assert ptb_tokenize_batch(["grade A.", "the dog", "grade A.", "The dog"]) == ["grade a.", "the dog",
                                                                                  "grade a", "the dog"]


def test_ptb_line_breaks_inside_captions_stay_aligned():
    captions = ["a\nb", "c\rd", "e\r\nf", "g\u2028h", "i\x0bj", "k\x0cl", "m\u2029n", "last"]
    assert ptb_tokenize_batch(captions) == ["a b", "c d", "e f", "g h", "i j", "k l", "m n", "last"]


def test_ptb_batch_is_deterministic_and_memo_free():
    from lrcn.metrics.ptb import _lexer, _tokenize_text
    r = random.Random(3)
    captions = [random_caption(r) for _ in range(300)] + [c for c in ENGLISH if c != "grade A."]
    _lexer().memo.update({" ": {}, "\n": {}, "": {}})               # cold
    first = ptb_tokenize_batch(captions)
    _tokenize_text.cache_clear()
    assert ptb_tokenize_batch(captions) == first                      # warm
    assert ptb_tokenize_batch(captions[::-1])[::-1] == first          # other neighbours
    assert [ptb_tokenize_batch([c])[0] for c in captions[-30:]] == first[-30:]
    assert ptb_tokenize_batch([]) == []


@needs_java
def test_ptb_matches_java_tokenizer():
    r = random.Random(0)
    alphabet = [chr(c) for c in range(32, 127)] + list("éñüßΣσ“”‘’«»—–…½¼¢£€¥°©®™§•·×\u00a0\u00ad\u2009\u200b\u3000")
    noise = ["".join(r.choice(alphabet) for _ in range(r.randint(0, 40))) for _ in range(400)]
    captions = ENGLISH + [random_caption(r) for _ in range(400)] + noise
    captions += captions[:200]                      # repeats exercise the chunk memo
    assert ptb_tokenize_batch(captions) == ptb_tokenize_batch(captions, backend="java")


# --------------------------------------------------------------------------------------------
# BLEU, CIDEr-D, ROUGE-L against pycocoevalcap
# --------------------------------------------------------------------------------------------

def _pycoco(candidates, references):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    gts = {i: references[i] for i in candidates}
    res = {i: [candidates[i]] for i in candidates}
    bleu, bleu_per = Bleu(4).compute_score(gts, res, verbose=0)
    cider, cider_per = Cider().compute_score(gts, res)
    rouge, rouge_per = Rouge().compute_score(gts, res)
    corpus = {**dict(zip(("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"), bleu)), "ROUGE_L": rouge, "CIDEr": cider}
    per = {**dict(zip(("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"), bleu_per)), "ROUGE_L": rouge_per, "CIDEr": cider_per}
    return corpus, per


@pytest.mark.parametrize("seed,n_images,refs", [(0, 300, (1, 6)), (1, 200, (5, 5)), (2, 50, (1, 1)), (3, 2, (2, 3))])
def test_fast_scores_equal_pycocoevalcap(seed, n_images, refs):
    candidates, references = random_sets(seed, n_images, refs)
    tok_cands = dict(zip(candidates, ptb_tokenize_batch(list(candidates.values()))))
    tok_refs = {i: ptb_tokenize_batch(references[i]) for i in references}
    corpus, per = _pycoco(tok_cands, tok_refs)
    ours = M.score(tok_cands, tok_refs, metrics=["Bleu", "ROUGE_L", "CIDEr"])
    assert list(ours.corpus) == ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"]
    for metric, value in corpus.items():
        assert ours.corpus[metric] == pytest.approx(value, abs=1e-9, rel=0)
        got = np.array([ours.per_image[i][metric] for i in candidates])
        np.testing.assert_allclose(got, np.asarray(per[metric]), rtol=0, atol=1e-9)


def test_bleu_hand_computed():
    tiny, small = 1e-15, 1e-9
    s = M.score({1: "a b c d"}, {1: ["a b c d e", "x y"]}, metrics=["Bleu"])
    bp = math.exp(1 - 1 / ((4 + tiny) / (5 + small)))          # closest reference length is 5
    p = [(4 - k + tiny) / (4 - k + small) for k in range(4)]
    expected = [np.prod(p[:k + 1]) ** (1 / (k + 1)) * bp for k in range(4)]
    assert [s.corpus[f"Bleu_{k}"] for k in range(1, 5)] == pytest.approx(expected, abs=1e-12)
    # a tie between reference lengths 3 and 5 for a 4-word candidate goes to the shorter: no penalty
    s = M.score({1: "a b c d"}, {1: ["a b c", "a b c d e"]}, metrics=["Bleu_1"])
    assert list(s.corpus) == ["Bleu_1"]
    assert s.corpus["Bleu_1"] == pytest.approx((4 + tiny) / (4 + small), abs=1e-12)


def test_rouge_lcs_and_long_captions():
    r = random.Random(5)
    from pycocoevalcap.rouge.rouge import Rouge, my_lcs
    for _ in range(200):
        a = [r.choice("abcd") for _ in range(r.randint(0, 90))]
        b = [r.choice("abcd") for _ in range(r.randint(0, 90))]
        assert lcs_length(a, b) == my_lcs(a, b)
    cands = [" ".join(r.choice(WORDS) for _ in range(n)) for n in (70, 3, 100, 0)]
    refs = [[" ".join(r.choice(WORDS) for _ in range(n)) for n in ns] for ns in ((80, 5), (66,), (2, 90), (0, 4))]
    expected = [Rouge().calc_score([c], rs) for c, rs in zip(cands, refs)]
    np.testing.assert_allclose(rouge_l(cands, refs), expected, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------------
# CiderD for self-critical training
# --------------------------------------------------------------------------------------------

def test_cider_batch_against_fixed_document_frequencies():
    from pycocoevalcap.cider.cider import Cider
    candidates, references = random_sets(7, 120)
    refs = {i: ptb_tokenize_batch(references[i]) for i in references}
    scorer = M.CiderD(refs, tokenize=False)
    r = random.Random(1)
    samples = [ptb_tokenize_batch([random_caption(r) for _ in refs]) for _ in range(3)]  # 3 samples per image
    ids = [i for _ in samples for i in refs]
    batch = scorer.score_batch(ids, [c for s in samples for c in s])
    for k, s in enumerate(samples):
        _, expected = Cider().compute_score(refs, {i: [c] for i, c in zip(refs, s)})
        np.testing.assert_allclose(batch[k * len(refs):(k + 1) * len(refs)], expected, rtol=0, atol=1e-9)
    # token lists are taken as they are; compute() is score_batch over all images
    tokens = [c.split() for c in samples[0]]
    np.testing.assert_allclose(scorer.score_batch(list(refs), tokens), batch[:len(refs)], atol=1e-12)
    corpus, per = scorer.compute(dict(zip(refs, samples[0])))
    assert corpus == pytest.approx(float(np.mean(batch[:len(refs)])), abs=1e-12)


def test_cider_tokenizes_raw_text_and_rejects_unknown_images():
    raw = {"a": ["A dog runs.", "A dog is running!"], "b": ["Two cats sleep.", "Cats sleeping."]}
    scorer = M.CiderD(raw)
    tok = M.CiderD({k: ptb_tokenize_batch(v) for k, v in raw.items()}, tokenize=False)
    np.testing.assert_allclose(scorer.score_batch(["a", "b"], ["A dog runs!", "Cats."]),
                               tok.score_batch(["a", "b"], ["a dog runs", "cats"]), atol=1e-12)
    with pytest.raises(DataError, match="'c'"):
        scorer.score_batch(["c"], ["x"])
    # one image: log(1) = 0 makes every TF-IDF weight zero, as in pycocoevalcap
    assert M.CiderD({"a": raw["a"]}).score_batch(["a"], ["A dog runs."])[0] == 0.0


# --------------------------------------------------------------------------------------------
# score(): backends, Java, SPICE, input rules
# --------------------------------------------------------------------------------------------

@needs_java
def test_fast_backend_equals_coco_backend_on_raw_text():
    candidates, references = random_sets(11, 150)
    candidates.update({1000 + k: c for k, c in enumerate(ENGLISH)})
    references.update({1000 + k: [ENGLISH[(k + 1) % len(ENGLISH)], c or "a dog", "A photo."] for k, c in enumerate(ENGLISH)})
    metrics = ["Bleu", "ROUGE_L", "CIDEr"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = M.score(candidates, references, metrics=metrics)
        coco = M.score(candidates, references, metrics=metrics, backend="coco")
    assert coco.backend == "coco" and fast.backend == "fast"
    for metric in fast.corpus:
        assert fast.corpus[metric] == pytest.approx(coco.corpus[metric], abs=1e-9, rel=0)
        for i in candidates:
            assert fast.per_image[i][metric] == pytest.approx(coco.per_image[i][metric], abs=1e-9, rel=0)


@needs_java
def test_meteor_runs_when_java_is_present():
    refs = {1: ["A dog runs on the grass.", "A brown dog running."], 2: ["Two people ride bikes."], 3: ["A cat."]}
    cands = {1: "A dog runs on the grass.", 2: "Bikes ridden by two people.", 3: ""}
    s = M.score(cands, refs, metrics=["METEOR", "CIDEr"])
    assert s.skipped == {}
    assert list(s.corpus) == ["METEOR", "CIDEr"]
    assert s.per_image[1]["METEOR"] > 0.9 and 0 < s.per_image[2]["METEOR"] < 1 and s.per_image[3]["METEOR"] == 0.0


def _no_java(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))      # a PATH without java: every Java call would fail
    assert shutil.which("java") is None


def test_without_java_meteor_and_spice_are_skipped_and_the_rest_is_computed(monkeypatch, tmp_path):
    candidates, references = random_sets(13, 40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with_java = M.score(candidates, references, metrics=["Bleu", "ROUGE_L", "CIDEr"])
    _no_java(monkeypatch, tmp_path)
    for backend in M.BACKENDS:
        with pytest.warns(RuntimeWarning) as record:
            s = M.score(candidates, references, backend=backend, spice=True)
        messages = " ".join(str(w.message) for w in record)
        assert "METEOR skipped: java not found on PATH" in messages and "SPICE skipped" in messages
        assert s.skipped["METEOR"] == "java not found on PATH" and s.skipped["SPICE"] == "java not found on PATH"
        assert list(s.corpus) == ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"]
        for metric, value in with_java.corpus.items():
            assert s.corpus[metric] == pytest.approx(value, abs=1e-9)


def test_spice_missing_is_a_warning_not_a_crash(monkeypatch):
    import lrcn.metrics.scoring as scoring
    monkeypatch.setattr(scoring, "spice_unavailable", lambda: "models missing")
    monkeypatch.setattr(scoring, "java_available", lambda: True)
    with pytest.warns(RuntimeWarning, match="SPICE skipped: models missing"):
        s = M.score({1: "a dog"}, {1: ["a dog runs"]}, metrics=["CIDEr", "SPICE"])
    assert s.skipped == {"SPICE": "models missing"} and list(s.corpus) == ["CIDEr"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")                               # spice=None: no warning, just skipped
        s = M.score({1: "a dog"}, {1: ["a dog runs"]}, metrics=["CIDEr"], spice=None)
    assert s.skipped == {}


def test_a_crashing_java_scorer_is_skipped_with_its_reason(monkeypatch):
    import lrcn.metrics.scoring as scoring

    def broken(gts, res):
        raise ValueError("could not convert string to float: ''")
    monkeypatch.setattr(scoring, "java_available", lambda: True)
    monkeypatch.setitem(scoring.COCO_SCORERS, "METEOR", broken)
    with pytest.warns(RuntimeWarning, match="METEOR skipped: failed: ValueError"):
        s = M.score({1: "a dog"}, {1: ["a dog runs"]}, metrics=["METEOR", "Bleu_1"])
    assert "could not convert" in s.skipped["METEOR"] and list(s.corpus) == ["Bleu_1"]


def test_input_rules():
    refs = {1: ["a dog runs", "a dog"], 2: ["two cats"], 3: ["a bird", "  ", ""]}
    with pytest.raises(DataError, match="e.g. \\[7\\]"):
        M.score({1: "a dog", 7: "x"}, refs)
    with pytest.raises(DataError, match="same type"):
        M.score({"1": "a dog"}, refs)
    with pytest.raises(DataError, match="image 1 is a int"):
        M.score({1: 5}, refs)
    with pytest.raises(DataError, match="list of captions"):
        M.score({1: "a dog"}, {1: "a dog"})
    with pytest.raises(DataError, match="no non-empty reference"):
        M.score({1: "a dog"}, {1: ["", " "]})
    with pytest.raises(DataError, match="no candidate captions"):
        M.score({}, refs)
    with pytest.raises(DataError, match="reference image"):
        M.score({1: "a dog"}, refs, require_all=True, metrics=["CIDEr"])
    with pytest.raises(ConfigError, match="unknown metric"):
        M.score({1: "a dog"}, refs, metrics=["BLEURT"])
    with pytest.raises(ConfigError, match="backend"):
        M.score({1: "a dog"}, refs, backend="java")
    with pytest.warns(RuntimeWarning) as record:
        s = M.score({1: "   ", 2: "two cats", 3: "a bird"}, refs, metrics=["Bleu", "ROUGE_L", "CIDEr"])
    assert any("1 image(s) have empty reference captions, e.g. [3]" in str(w.message) for w in record)
    assert all(v == 0.0 for v in s.per_image[1].values())                 # an empty candidate scores 0
    assert s.per_image[2]["ROUGE_L"] == 1.0                                 # a single reference is fine
    with pytest.warns(RuntimeWarning, match="1 reference image"):
        M.score({1: "a dog", 2: "cats"}, refs, metrics=["CIDEr"])


def test_resolve_metrics_aliases():
    assert M.resolve_metrics(["bleu", "cider-d", "Rouge"]) == ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"]
    assert M.resolve_metrics(None, spice=False) == ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"]
    assert M.resolve_metrics("CIDEr", spice=True) == ["CIDEr", "SPICE"]


# --------------------------------------------------------------------------------------------
# COCO formats, reports, CLI
# --------------------------------------------------------------------------------------------

def _coco_refs(tmp_path, refs):
    images = [{"id": i, "file_name": f"{i}.jpg"} for i in refs]
    anns = [{"id": k, "image_id": i, "caption": c} for k, (i, c) in enumerate((i, c) for i in refs for c in refs[i])]
    path = tmp_path / "captions.json"
    path.write_text(json.dumps({"images": images, "annotations": anns}))
    return path


def test_results_round_trip_through_pycocotools(tmp_path, capsys):
    from pycocotools.coco import COCO
    refs = {1: ["a dog runs"], 2: ["a cat sleeps", "a cat"], 3: ["birds"]}
    refs_path = _coco_refs(tmp_path, refs)
    results = tmp_path / "results.json"
    M.write_results(results, {np.int64(1): "a dog", "2": "a cat", 3: "café 🐦"})
    assert json.loads(results.read_text(encoding="utf-8"))[1] == {"image_id": 2, "caption": "a cat"}
    coco = COCO(str(refs_path))
    loaded = coco.loadRes(str(results))
    assert sorted(loaded.getImgIds()) == [1, 2, 3]
    assert M.load_results(results) == {1: "a dog", 2: "a cat", 3: "café 🐦"}
    assert M.load_references(refs_path) == refs
    capsys.readouterr()


def test_bad_files_name_the_fault(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"image_id": 1, "caption": "a"},\n {"image_id": 2 "caption": "b"}]')
    with pytest.raises(DataError, match="line 2, column"):
        M.load_results(bad)
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps([{"image_id": 5, "caption": "a"}, {"image_id": 5, "caption": "b"}]))
    with pytest.raises(DataError, match="image id 5 appears twice \\(entries 0 and 1\\)"):
        M.load_results(dup)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps([{"image_id": 1.5, "caption": "a"}]))
    with pytest.raises(DataError, match="entry 0"):
        M.load_results(wrong)
    refs = tmp_path / "refs.json"
    refs.write_text(json.dumps({"images": [{"id": 1}], "annotations": [{"image_id": 2, "caption": "x"}]}))
    with pytest.raises(DataError, match="annotations\\[0\\].*image id 2"):
        M.load_references(refs)
    with pytest.raises(DataError, match="no such file"):
        M.load_results(tmp_path / "missing.json")


def test_karpathy_references(tmp_path):
    data = {"dataset": "flickr8k", "images": [
        {"imgid": 0, "split": "test", "sentences": [{"raw": "A dog.", "tokens": ["a", "dog"]}]},
        {"imgid": 1, "split": "train", "sentences": [{"raw": "A cat.", "tokens": ["a", "cat"]}]}]}
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(data))
    assert M.load_references(path, split="test") == {0: ["A dog."]}
    assert M.load_references(path) == {0: ["A dog."], 1: ["A cat."]}


def test_tables_and_saved_reports(tmp_path):
    rows = {"blind": {"Bleu_4": 0.05, "CIDEr": 0.1}, "beam3": {"CIDEr": 0.98765, "Bleu_4": 0.3, "METEOR": 0.25}}
    table = M.format_table(rows).splitlines()
    assert table[0].split() == ["system", "Bleu_4", "METEOR", "CIDEr"]
    assert table[1].split() == ["blind", "0.0500", "-", "0.1000"] and table[2].split() == ["beam3", "0.3000", "0.2500", "0.9877"]
    assert len({len(line) for line in table}) == 1                                  # aligned
    assert M.markdown_table(rows).splitlines()[2] == "| blind | 0.0500 | - | 0.1000 |"
    s = M.Scores({"CIDEr": 0.5}, {1: {"CIDEr": 0.25}, "x": {"CIDEr": 0.75}}, {"METEOR": "java not found on PATH"})
    paths = M.save_scores(tmp_path, "test_greedy", s)
    assert json.loads((tmp_path / "metrics_test_greedy.json").read_text()) == {"CIDEr": 0.5}
    assert json.loads((tmp_path / "per_image_test_greedy.json").read_text()) == [
        {"image_id": 1, "CIDEr": 0.25}, {"image_id": "x", "CIDEr": 0.75}]
    report = (tmp_path / "metrics_test_greedy.md").read_text()
    assert "| test_greedy | 0.5000 |" in report and "METEOR skipped: java not found on PATH" in report
    assert set(paths) == {"metrics", "report", "per_image"}


def test_cli_score_without_java(tmp_path, monkeypatch, capsys):
    refs = {1: ["A dog runs on the grass.", "A dog running."], 2: ["Two cats sleep on a bed."], 3: ["A bird."]}
    refs_path = _coco_refs(tmp_path, refs)
    results = tmp_path / "results.json"
    M.write_results(results, {1: "A dog runs.", 2: "Two cats on a bed."})
    _no_java(monkeypatch, tmp_path)
    out_json, per_image = tmp_path / "scores.json", tmp_path / "per_image.json"
    code = main(["score", str(results), "--refs", str(refs_path), "--json", str(out_json), "--per-image", str(per_image)])
    captured = capsys.readouterr()
    assert code == 0
    assert "warning: METEOR skipped: java not found on PATH" in captured.err
    assert "warning: scoring 2 images with candidates; 1 reference image(s)" in captured.err
    corpus = json.loads(out_json.read_text())
    assert list(corpus) == ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"]
    expected = M.score({1: "A dog runs.", 2: "Two cats on a bed."}, {1: refs[1], 2: refs[2]},
                       metrics=["Bleu", "ROUGE_L", "CIDEr"])
    assert corpus == pytest.approx(expected.corpus, abs=1e-12)
    assert [p["image_id"] for p in json.loads(per_image.read_text())] == [1, 2]
    assert "CIDEr" in captured.out.splitlines()[0]
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main(["score", str(bad), "--refs", str(refs_path)]) == 2
    assert "bad.json: invalid JSON at line 1" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# diversity
# --------------------------------------------------------------------------------------------

def test_diversity_statistics():
    captions = {1: "A dog runs.", 2: "A dog sits.", 3: "A cat runs on grass."}
    stats = M.diversity(captions, train_captions=["a dog runs", "two birds"])
    assert stats["vocab_size"] == 7                           # a dog runs sits cat on grass
    assert stats["distinct_1"] == pytest.approx(7 / 11)
    assert stats["distinct_2"] == pytest.approx(7 / 8)       # "a dog" twice
    assert stats["mean_length"] == pytest.approx(11 / 3)
    assert stats["novel_fraction"] == pytest.approx(2 / 3)
    assert "mbleu_4" not in stats


def test_mbleu4_equals_pycocoevalcap_sentence_bleu():
    from pycocoevalcap.bleu.bleu import Bleu
    nbest = {1: ["a dog runs on the grass", "a dog runs on grass", "a brown dog is running"], 2: ["a cat", "a cat"],
             3: ["only one"]}
    stats = M.diversity({k: v[0] for k, v in nbest.items()}, nbest=nbest)
    per_list = []
    for captions in (nbest[1], nbest[2]):
        scores = []
        for j, c in enumerate(captions):
            others = [o for k, o in enumerate(captions) if k != j]
            scores.append(Bleu(4).compute_score({0: others}, {0: [c]}, verbose=0)[1][3][0])
        per_list.append(np.mean(scores))
    assert stats["mbleu_4"] == pytest.approx(np.mean(per_list), abs=1e-12)
    assert stats["div_1"] == pytest.approx(np.mean([9 / 16, 2 / 4, 2 / 2]))
