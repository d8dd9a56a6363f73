"""The command line end to end on a tiny shapes set: train, resume, evaluate, caption, demo."""

import argparse
import json
import math

import pytest
import torch
from pycocotools.coco import COCO

from conftest import tiny_overrides
from lrcn.cli import main
from lrcn.commands.options import add_decoding_arguments, decode_config_from_args
from lrcn.config import load_config
from lrcn.decoding import STRATEGIES, DecodeConfig, DecodeOutput, Strategy, generate
from lrcn.errors import ConfigError
from lrcn.commands.demo import DEMO_CONFIG
from lrcn.run import Run
from lrcn.train import loop

DEMO = str(DEMO_CONFIG)


@pytest.fixture(scope="module")
def trained_run(tiny_shapes, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    args = ["-q", "train", DEMO]
    for o in tiny_overrides(tiny_shapes, runs, name="tiny"):
        args += ["--set", o]
    assert main(args) == 0
    return runs / "tiny"


def test_train_writes_a_complete_run_folder(trained_run):
    run = Run.open(trained_run)
    assert run.config().name == "tiny" and run.config().encoder.image_size == 64
    vocab = run.vocab()
    assert vocab.words[:4] == ["<pad>", "<start>", "<end>", "<unk>"] and "circle" in vocab.words
    ckpt = run.checkpoint("last")
    assert ckpt["progress"]["epoch"] == 2 and ckpt["vocab"] == vocab.words
    assert run.best.exists() and list(run.tb.glob("events.out.tfevents.*"))


def test_evaluate_writes_coco_results_and_scores(trained_run, tmp_path, capsys):
    out = tmp_path / "scores.json"
    assert main(["-q", "evaluate", str(trained_run), "--split", "test", "--beam", "2", "--json", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert set(scores) >= {"Bleu_1", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"}
    assert all(0 <= v <= 10 for v in scores.values())
    results = trained_run / "results_test_beam2.json"
    entries = json.loads(results.read_text())
    assert len(entries) == 6 and all(set(e) == {"image_id", "caption"} for e in entries)
    assert "CIDEr" in capsys.readouterr().out
    # the results file loads into pycocotools against COCO-format references
    refs = tmp_path / "refs.json"
    images = [{"id": e["image_id"]} for e in entries]
    refs.write_text(json.dumps({"images": images, "annotations": [
        {"id": i, "image_id": e["image_id"], "caption": "a shape"} for i, e in enumerate(entries)]}))
    assert len(COCO(str(refs)).loadRes(str(results)).getImgIds()) == 6


def test_caption_a_folder_with_a_broken_file(trained_run, tiny_shapes, tmp_path, capsys):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    images = sorted((tiny_shapes.parent / "images").glob("*.png"))[:3]
    for i, src in enumerate(images):
        (folder / ("sub" if i else "") / src.name).write_bytes(src.read_bytes())
    (folder / "broken.jpg").write_bytes(b"not an image at all")
    out = tmp_path / "out"
    assert main(["-q", "caption", str(trained_run), str(folder), "--out", str(out), "--beam", "2",
                 "--n-best", "2"]) == 0
    result = json.loads((out / "captions.json").read_text())
    assert len(result["captions"]) == 3 and list(result["skipped"]) == [str(folder / "broken.jpg")]
    entry = next(iter(result["captions"].values()))
    assert entry["width"] == 64 and len(entry["nbest"]) == 2 and entry["caption"] == entry["nbest"][0]["caption"]
    assert "broken.jpg" in (out / "index.html").read_text()
    # a re-run captions nothing again
    before = (out / "captions.json").read_text()
    assert main(["-q", "caption", str(trained_run), str(folder), "--out", str(out), "--beam", "2",
                 "--n-best", "2"]) == 0
    assert (out / "captions.json").read_text() == before


def test_caption_to_stdout_lists_the_n_best(trained_run, tiny_shapes, capsys):
    image = sorted((tiny_shapes.parent / "images").glob("*.png"))[0]
    assert main(["-q", "caption", str(trained_run), str(image), "--beam", "3", "--n-best", "3"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [(r[0], r[1]) for r in rows] == [(str(image), "1"), (str(image), "2"), (str(image), "3")]
    scores = [float(r[2]) for r in rows]
    assert scores == sorted(scores, reverse=True) and len({r[3] for r in rows}) == 3
    assert main(["-q", "caption", str(trained_run), str(image), "--beam", "3"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{image}\t{rows[0][3]}"]


def test_resume_after_interruption_ends_with_identical_weights(tiny_shapes, tmp_path, monkeypatch):
    overrides = tiny_overrides(tiny_shapes, tmp_path, **{"train.epochs": 3, "train.checkpoint_every": 2,
                                                          "decoder.dropout": 0.3})
    straight = Run(loop.train(load_config(DEMO, overrides + ["name=straight"]), progress=False))

    class Killed(Exception):
        pass

    calls = {"n": 0}
    real = loop.build_loss

    def dying_loss(*args):
        inner = real(*args)

        def loss(*a):
            calls["n"] += 1
            if calls["n"] == 11:               # mid-epoch 2, after the step-10 checkpoint
                raise Killed
            return inner(*a)
        return loss

    monkeypatch.setattr(loop, "build_loss", dying_loss)
    with pytest.raises(Killed):
        loop.train(load_config(DEMO, overrides + ["name=resumed"]), progress=False)
    monkeypatch.setattr(loop, "build_loss", real)
    assert Run(tmp_path / "resumed").checkpoint("last")["progress"]["step"] == 10
    assert main(["-q", "train", "--resume", str(tmp_path / "resumed")]) == 0
    a = straight.checkpoint("last")["model"]
    b = Run(tmp_path / "resumed").checkpoint("last")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_user_errors_are_one_line_without_traceback(tiny_shapes, tmp_path, capsys, monkeypatch):
    assert main(["train", DEMO, "--set", "train.epochz=3"]) == 2
    assert "unknown config key 'train.epochz'" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    assert main(["train", DEMO, "--set", f"data.split_json={tmp_path / 'none.json'}"]) == 2
    assert "none.json does not exist" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()               # a refused run leaves no run folder behind
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "not an lrcn run folder" in capsys.readouterr().err


def test_decoding_options():
    parser = add_decoding_arguments(argparse.ArgumentParser())
    args = parser.parse_args("--beam 5 --length-penalty gnmt --alpha 0.8 --n-best 3 --allow-unk".split())
    c = decode_config_from_args(args, base=DecodeConfig(max_len=16))
    assert (c.beam_size, c.length_penalty, c.alpha, c.n_best, c.max_len, c.suppress_unk) == (5, "gnmt", 0.8, 3, 16, False)
    assert decode_config_from_args(parser.parse_args([]), base=c) == c
    s = decode_config_from_args(parser.parse_args("--sample --top-k 10 --top-p 0.9 --temperature 0.7 "
                                                 "--sample-seed 4".split()))
    assert (s.sample, s.top_k, s.top_p, s.temperature, s.seed, s.selected.name) == (True, 10, 0.9, 0.7, 4, "sample")
    assert decode_config_from_args(parser.parse_args("--beam 6 --groups 3".split())).selected.name == "diverse"
    assert decode_config_from_args(parser.parse_args(["--no-sample"]), base=s).selected.name == "greedy"
    with pytest.raises(ConfigError):
        decode_config_from_args(parser.parse_args("--beam 2 --sample".split()))
    # a run whose config searches 3 beams can still be sampled from, and a sampling run searched
    beam3 = DecodeConfig.from_dict({"beam_size": 3, "max_len": 16})
    s = decode_config_from_args(parser.parse_args("--sample --top-p 0.9".split()), base=beam3)
    assert (s.selected.name, s.beam_size, s.top_p, s.max_len) == ("sample", 1, 0.9, 16)
    assert decode_config_from_args(parser.parse_args("--beam 5".split()), base=s).selected.name == "beam"
    # --strategy names one; --beam / --groups / --sample choose as `strategy: auto` does
    named = decode_config_from_args(parser.parse_args("--strategy sample --n-best 2".split()), base=beam3)
    assert (named.strategy, named.selected.name, named.beam_size, named.label) == ("sample", "sample", 3, "sample-t1")
    assert decode_config_from_args(parser.parse_args("--top-k 3".split()), base=named).selected.name == "sample"
    assert decode_config_from_args(parser.parse_args("--beam 4".split()), base=named).label == "beam4"
    assert decode_config_from_args(parser.parse_args("--strategy greedy".split()), base=beam3).label == "greedy"
    with pytest.raises(SystemExit):
        parser.parse_args("--strategy nucleus".split())


# ----------------------------------------------------------------------------- a strategy in one entry

@torch.no_grad()
def no_repeat_greedy(model, features, config, *, bos, eos, unk=None, pad=None) -> DecodeOutput:
    """Greedy, except that a word never directly follows itself (``<end>`` after max_len words)."""
    state = model.init_state(features)
    rows = state[0].shape[0]
    words, done = torch.full((rows,), bos), torch.zeros(rows, dtype=torch.bool)
    log_prob, tokens = torch.zeros(rows), []
    for t in range(config.max_len + 1):
        log_probs, state = model.step(words, state)                       # [B, V]
        allowed = torch.ones_like(log_probs, dtype=torch.bool)
        allowed[:, [bos, *([pad] if pad is not None else [])]] = False
        allowed[torch.arange(rows), words] = False
        if t == config.max_len:
            allowed[:] = False
            allowed[:, eos] = True
        words = log_probs.masked_fill(~allowed, -math.inf).argmax(-1).masked_fill(done, eos)
        log_prob += log_probs.gather(1, words[:, None]).squeeze(1).masked_fill(done, 0.0)
        tokens.append(words)
        done |= words == eos
        if done.all():
            break
    tokens = torch.stack(tokens, 1)                                       # [B, T]
    lengths = (tokens != eos).long().cumprod(1).sum(1)
    return DecodeOutput(tokens[:, None], lengths[:, None], log_prob[:, None], log_prob[:, None])


class Repeater(torch.nn.Module):
    """Vocabulary <pad> <start> <end> <unk> a b: after <start> 'a' is likeliest, after 'a' 'a' again
    (then <end>, then 'b'), after 'b' <end>."""

    def __init__(self):
        super().__init__()
        table = torch.full((6, 6), -9.0)
        table[1, [4, 5, 2]] = torch.tensor([2.0, 1.0, 0.0])
        table[4, [4, 2, 5]] = torch.tensor([2.0, 1.0, 0.0])
        table[5, [2, 4]] = torch.tensor([2.0, 0.0])
        self.table = table.log_softmax(-1)

    def init_state(self, features):
        return (features.float()[:, None],)

    def step(self, words, state):
        return self.table[words], state

    def reorder(self, state, index):
        return tuple(s[index] for s in state)


def test_a_strategy_registered_in_one_entry_is_selected_validated_decoded_and_named(trained_run, monkeypatch, capsys):
    entry = Strategy("norepeat", no_repeat_greedy, options=("n_best",), label=lambda c: f"norepeat{c.max_len}",
                     problems=lambda c: [] if c.n_best == 1 else [f"decode.n_best must be 1 (got {c.n_best})"])
    with pytest.raises(ConfigError, match="decode.strategy 'norepeat' is unknown"):
        DecodeConfig(strategy="norepeat")
    monkeypatch.setitem(STRATEGIES, "norepeat", entry)
    config = DecodeConfig(strategy="norepeat", max_len=4)
    assert config.selected is entry and config.label == "norepeat4"
    with pytest.raises(ConfigError, match="decode.n_best must be 1"):
        DecodeConfig(strategy="norepeat", n_best=2)
    # decodes: greedy repeats 'a' to max_len; norepeat says 'a' once, then <end> (likelier than 'b')
    assert [h[0].tokens for h in generate(Repeater(), torch.zeros(1), DecodeConfig(max_len=4), bos=1, eos=2)] == \
        [[4, 4, 4, 4]]
    assert [h[0].tokens for h in generate(Repeater(), torch.zeros(1), config, bos=1, eos=2)] == [[4]]
    # evaluated into files of its own, chosen on the command line like any other strategy
    assert main(["-q", "evaluate", str(trained_run), "--strategy", "norepeat", "--max-len", "6"]) == 0
    results = json.loads((trained_run / "results_test_norepeat6.json").read_text())
    assert len(results) == 6 and (trained_run / "metrics_test_norepeat6.json").exists()
    for entry_ in results:
        words = entry_["caption"].split()
        assert all(a != b for a, b in zip(words, words[1:]))
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "{auto,greedy,beam,diverse,sample,norepeat}" in capsys.readouterr().out
