import json

import pytest

from lrcn.errors import CheckpointError
from lrcn.text import SPECIALS, Vocabulary, tokenize


def test_tokenize_lowercases_splits_and_drops_coco_punctuation():
    assert tokenize("A Dog, running (fast) -- on the beach!") == ["a", "dog", "running", "fast", "on", "the", "beach"]
    assert tokenize("The dog's ball isn't red.") == ["the", "dog", "'s", "ball", "is", "n't", "red"]
    assert tokenize('He said "hi"; then left...') == ["he", "said", "hi", "then", "left"]
    assert tokenize("   ") == []


def test_vocabulary_min_count_order_and_specials():
    v = Vocabulary.build(["a red circle", "a blue circle", "a red square", "one star"], min_count=2)
    assert v.words[:4] == list(SPECIALS)
    assert v.words[4:] == ["a", "circle", "red"]          # by count, then alphabetical
    assert (v.pad, v.start, v.end, v.unk) == (0, 1, 2, 3)
    assert v.encode("A red star") == [4, 6, 3]
    assert v.encode("a red circle a red circle", max_len=4) == [4, 6, 5, 4]


def test_vocabulary_decode_stops_at_end_and_skips_specials():
    v = Vocabulary.build(["a red circle"])
    ids = [v.start, *v.encode("a red circle"), v.end, *v.encode("a")]
    assert v.decode(ids) == "a red circle"
    assert v.decode([v.pad, v.unk, v.index["red"]]) == "<unk> red"


def test_vocabulary_json_round_trip(tmp_path):
    v = Vocabulary.build(["two small red circles above a large blue square", "ünïcode wörds 🙂"])
    v.save(tmp_path / "vocab.json")
    assert json.loads((tmp_path / "vocab.json").read_text())["format"] == "lrcn-vocab-1"
    w = Vocabulary.load(tmp_path / "vocab.json")
    assert w == v and w.encode("two red wörds") == v.encode("two red wörds")


def test_vocabulary_refuses_foreign_files(tmp_path):
    (tmp_path / "vocab.json").write_text('{"words": ["a", "b"]}')
    with pytest.raises(CheckpointError, match="not an lrcn vocabulary"):
        Vocabulary.load(tmp_path / "vocab.json")
    with pytest.raises(CheckpointError, match="cannot read"):
        Vocabulary.load(tmp_path / "missing.json")
