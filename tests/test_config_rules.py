"""Every config rule refuses a bad value before any data is read: one case per rule.

Each case trains (``lrcn train CONFIG --set ...``) on a split JSON listing thousands of images
that do not exist, so a run that got past the config would make a run folder and a feature store
(and spend its time failing to read them); a refused one exits with code 2, names the key, and
leaves neither behind.
"""

import json
import subprocess
import sys
import time

import pytest
import yaml

from lrcn.cli import main
from lrcn.config import CHOICES, RANGES, Config, load_config, save_config
from lrcn.commands.demo import DEMO_CONFIG
from lrcn.errors import ConfigError
from lrcn.train.loop import train

DEMO = str(DEMO_CONFIG)
N_IMAGES = 5000

# (overrides, the key the error must name); each case breaks exactly one rule of the demo config
CASES = [
    # data
    (["data.min_word_count=0"], "data.min_word_count"),
    (["data.max_caption_len=0"], "data.max_caption_len"),
    (["data.num_workers=-1"], "data.num_workers"),
    (["data.max_pixels=0"], "data.max_pixels"),
    (["data.num_frames=0"], "data.num_frames"),
    (["data.fps=0"], "data.fps"),
    (["data.source_fps=-25"], "data.source_fps"),
    (["data.frame_sampling=random"], "data.frame_sampling"),
    (["data.frame_sampling=fps"], "data.fps"),                                  # a rate needs data.fps
    (["data.train_views=-1"], "data.train_views"),
    (["data.view_min_area=0"], "data.view_min_area"),
    (["data.view_min_area=1.5"], "data.view_min_area"),
    (["data.modality=video", "decoder.kind=s2vt", "data.train_views=2"], "data.train_views"),   # crops of images
    (["data.train_views=2", "encoder.trainable_blocks=1"], "encoder.trainable_blocks"),  # views are extracted once
    # encoder
    (["encoder.name=resnet9000"], "encoder.name"),
    (["encoder.image_size=16"], "encoder.image_size"),
    (["encoder.attention_map=-1"], "encoder.attention_map"),
    (["encoder.attention_map=65"], "encoder.attention_map"),                    # finer than a 128 px image's grids
    (["encoder.trainable_blocks=-1"], "encoder.trainable_blocks"),
    (["encoder.lr=0"], "encoder.lr"),
    (["encoder.lr=2"], "encoder.lr"),
    (["encoder.batch_size=0"], "encoder.batch_size"),
    (["encoder.grid_size=-1"], "encoder.grid_size"),
    (["encoder.features=patches"], "encoder.features"),
    (["encoder.features=grid", "encoder.attention_map=4"], "encoder.attention_map"),   # a grid has every position
    (["encoder.flip_average=true", "encoder.attention_map=4"], "encoder.flip_average"),
    (["encoder.grid_size=5"], "encoder.grid_size"),                             # pooled features have no grid
    (["data.modality=video", "decoder.kind=s2vt", "decoder.concepts=true"], "decoder.concepts"),
    # decoder
    (["decoder.kind=transformer"], "decoder.kind"),
    (["decoder.embed_dim=0"], "decoder.embed_dim"),
    (["decoder.hidden_dim=0"], "decoder.hidden_dim"),
    (["decoder.num_layers=0"], "decoder.num_layers"),
    (["decoder.kind=lrcn_2f", "decoder.num_layers=3"], "decoder.num_layers"),   # LRCN kinds fix their depth
    (["data.modality=video", "decoder.kind=lstm+lrcn_2f", "decoder.num_layers=1"], "decoder.num_layers"),
    (["data.modality=video", "decoder.kind=s2vt", "decoder.num_layers=3"], "decoder.num_layers"),
    (["decoder.dropout=1.0"], "decoder.dropout"),
    (["decoder.dropout=-0.1"], "decoder.dropout"),
    (["decoder.embed_dim=128", "decoder.hidden_dim=256", "decoder.tie_embeddings=true"], "decoder.tie_embeddings"),
    (["data.modality=video", "decoder.kind=s2vt", "decoder.frame_deltas=flow"], "decoder.frame_deltas"),
    (["decoder.frame_deltas=all"], "decoder.frame_deltas"),                     # needs a video decoder
    (["data.modality=audio"], "data.modality"),
    (["data.modality=video"], "data.modality"),                                 # an image decoder.kind
    (["decoder.kind=s2vt"], "data.modality"),                                   # a video kind on images
    (["data.modality=video", "decoder.kind=s2vt", "encoder.trainable_blocks=1"], "encoder.trainable_blocks"),
    (["data.modality=video", "decoder.kind=mean+show_and_tell", "decoder.frame_deltas=where"], "encoder.attention_map"),
    (["data.modality=video", "decoder.kind=s2vt", "decoder.delta_gain=0"], "decoder.delta_gain"),
    # train
    (["train.epochs=0"], "train.epochs"),
    (["train.batch_size=0"], "train.batch_size"),
    (["train.lr=0"], "train.lr"),
    (["train.lr=-1e-3"], "train.lr"),
    (["train.lr=3"], "train.lr"),
    (["train.lr=.nan"], "train.lr"),
    (["train.lr_decay=0"], "train.lr_decay"),
    (["train.lr_decay_every=0"], "train.lr_decay_every"),
    (["train.weight_decay=-1"], "train.weight_decay"),
    (["train.grad_clip=-1"], "train.grad_clip"),
    (["train.loss=ppo"], "train.loss"),
    (["train.label_smoothing=1.0"], "train.label_smoothing"),
    (["train.word_dropout=1.0"], "train.word_dropout"),
    (["train.word_dropout=-0.1"], "train.word_dropout"),
    (["train.ema=1"], "train.ema"),
    (["train.auxiliary_weight=-1"], "train.auxiliary_weight"),
    (["train.scheduled_sampling=cosine"], "train.scheduled_sampling"),
    (["train.scheduled_sampling=linear", "train.ss_k=-1"], "train.ss_k"),
    (["train.scheduled_sampling=exponential", "train.ss_k=1.5"], "train.ss_k"),
    (["train.ss_max_prob=1.5"], "train.ss_max_prob"),
    (["train.ss_start_epoch=-1"], "train.ss_start_epoch"),
    (["train.ss_pick=beam"], "train.ss_pick"),
    (["train.scst_samples=0"], "train.scst_samples"),
    (["train.loss=scst", "train.scst_baseline=mean", "train.scst_samples=1"], "train.scst_samples"),
    (["train.scst_baseline=critic"], "train.scst_baseline"),
    (["train.scst_temperature=0"], "train.scst_temperature"),
    (["train.val_metric=METEOR"], "train.val_metric"),                          # not scored during training
    (["train.val_max_images=-1"], "train.val_max_images"),
    (["train.patience=-1"], "train.patience"),
    (["train.checkpoint_every=-1"], "train.checkpoint_every"),
    (["train.log_every=0"], "train.log_every"),
    (["train.device=gpu"], "train.device"),
    # decode
    (["decode.beam_size=0"], "decode.beam_size"),
    (["decode.beam_size=x"], "decode.beam_size"),
    (["decode.groups=0"], "decode.groups"),
    (["decode.groups=2"], "decode.groups"),                                    # beam_size 3 is no multiple of 2
    (["decode.diversity_strength=-1"], "decode.diversity_strength"),
    (["decode.length_penalty=norm"], "decode.length_penalty"),
    (["decode.alpha=.inf"], "decode.alpha"),
    (["decode.max_len=0"], "decode.max_len"),
    (["decode.min_len=30"], "decode.min_len"),
    (["decode.block_ngram=-1"], "decode.block_ngram"),
    (["decode.temperature=0"], "decode.temperature"),
    (["decode.top_k=-1"], "decode.top_k"),
    (["decode.top_p=0"], "decode.top_p"),
    (["decode.top_p=1.5"], "decode.top_p"),
    (["decode.n_best=0"], "decode.n_best"),
    (["decode.n_best=4"], "decode.n_best"),                                    # more than beam_size 3
    (["decode.strategy=greedy", "decode.n_best=2"], "decode.n_best"),
    (["decode.sample=true"], "decode.sample"),                                 # with beam_size 3
    (["decode.strategy=nucleus"], "decode.strategy"),
    (["decode.suppress_tokens=[a]"], "decode.suppress_tokens"),
    (["decode.beams=3"], "decode.beams"),
    (["decode.rerank=-1"], "decode.rerank"),
    (["decode.rerank=3", "decode.rerank_metric=clip"], "decode.rerank_metric"),
]


@pytest.fixture(scope="module")
def big_dataset(tmp_path_factory):
    """A split JSON of N_IMAGES images that do not exist (as if extraction would take hours)."""
    root = tmp_path_factory.mktemp("big")
    images = [{"filename": f"{i:06d}.jpg", "split": ("train", "val", "test")[i % 3], "id": i,
               "sentences": [{"raw": "a picture of nothing"}]} for i in range(N_IMAGES)]
    path = root / "dataset_big.json"
    path.write_text(json.dumps({"images": images}))
    return path


def train_args(big_dataset, tmp_path, overrides: list[str]) -> list[str]:
    args = ["-q", "train", DEMO, "--set", f"data.split_json={big_dataset}", "--set", f"train.runs_dir={tmp_path / 'runs'}"]
    for o in overrides:
        args += ["--set", o]
    return args


def assert_nothing_made(big_dataset, tmp_path) -> None:
    assert not (tmp_path / "runs").exists()                        # no run folder
    assert not (big_dataset.parent / "features").exists()          # no feature store


def test_each_case_is_valid_without_its_bad_value(big_dataset):
    """The demo config with the cases' helper overrides alone (not the bad value) is accepted, so
    each case fails for its own rule."""
    helpers = {"decoder.kind=lrcn_2f", "decoder.kind=lstm+lrcn_2f", "decoder.kind=s2vt",
               "decoder.kind=mean+show_and_tell", "train.scheduled_sampling=linear",
               "train.scheduled_sampling=exponential", "train.loss=scst", "train.scst_baseline=mean",
               "decode.strategy=greedy", "data.modality=video", "encoder.features=grid",
               "encoder.flip_average=true", "decode.rerank=3", "decoder.embed_dim=128", "decoder.hidden_dim=256",
               "data.train_views=2"}
    for overrides, _ in CASES:
        given = overrides[:-1]
        assert set(given) <= helpers
        load_config(DEMO, [f"data.split_json={big_dataset}", *given])


@pytest.mark.parametrize("overrides, key", CASES, ids=[" ".join(o) for o, _ in CASES])
def test_a_bad_value_fails_before_any_data_is_read(overrides, key, big_dataset, tmp_path, capsys):
    started = time.perf_counter()
    assert main(train_args(big_dataset, tmp_path, overrides)) == 2
    err = capsys.readouterr().err
    assert key in err and "Traceback" not in err
    assert time.perf_counter() - started < 5                       # (the config alone, not the data)
    assert_nothing_made(big_dataset, tmp_path)


def test_every_range_and_name_table_has_a_case():
    tested = {key for _, key in CASES} | {o.split("=")[0] for overrides, _ in CASES for o in overrides}
    assert set(RANGES) - tested == set() and set(CHOICES) - tested == set()


def test_allowed_values_are_named():
    with pytest.raises(ConfigError) as e:
        load_config(DEMO, ["decoder.kind=gru", "train.lr=2", "train.loss=ppo"])
    message = str(e.value)
    # every problem at once, each with what is allowed
    assert "lstm+lrcn_2f" in message and "s2vt" in message and "show_and_tell" in message
    assert "train.lr must be in (0, 1] (got 2.0)" in message and "choose one of xe, scst" in message


def test_the_command_line_process_refuses_in_seconds(big_dataset, tmp_path):
    """`python -m lrcn.cli train` itself: exit code 2, the key on stderr, nothing made."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "lrcn.cli", *train_args(big_dataset, tmp_path, ["decode.beam_size=0"])],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "decode.beam_size must be >= 1 (got 0)" in done.stderr
    assert time.perf_counter() - started < 30                      # python and torch start-up, on a busy machine
    assert_nothing_made(big_dataset, tmp_path)


def test_what_only_the_backbone_knows_is_refused_before_any_data(big_dataset, tmp_path, capsys):
    """The encoder is built (from its weights, not from data) before the split is read."""
    assert main(train_args(big_dataset, tmp_path, ["encoder.trainable_blocks=99"])) == 2
    assert "trainable_blocks=99" in capsys.readouterr().err
    assert_nothing_made(big_dataset, tmp_path)


def test_extract_refuses_the_same_way(big_dataset, tmp_path, capsys):
    args = ["-q", "extract", DEMO, "--set", f"data.split_json={big_dataset}", "--set", "decode.top_p=0"]
    assert main(args) == 2
    assert "decode.top_p" in capsys.readouterr().err
    assert_nothing_made(big_dataset, tmp_path)


def fake_run(tmp_path, big_dataset, name: str = "old", **bad: dict) -> str:
    """A run folder holding only its config (nothing trained): enough for the config to be read.
    ``bad``: section -> {key: value} written into its config.yaml past validation."""
    config = load_config(DEMO, [f"data.split_json={big_dataset}", f"train.runs_dir={tmp_path / 'runs'}"])
    run = tmp_path / name
    run.mkdir()
    save_config(config, run / "config.yaml")
    saved = yaml.safe_load((run / "config.yaml").read_text())
    for section, values in bad.items():
        saved[section].update(values)
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    return str(run)


def test_evaluate_and_caption_refuse_bad_decoding_options(big_dataset, tmp_path, capsys):
    run = fake_run(tmp_path, big_dataset)
    for args in (["evaluate", run, "--beam", "0"], ["evaluate", run, "--beam", "4", "--groups", "3"],
                 ["evaluate", run, "--sample", "--top-p", "2"], ["caption", run, "x.png", "--n-best", "5"]):
        assert main(["-q", *args]) == 2
        err = capsys.readouterr().err
        assert "decode." in err and "Traceback" not in err
    assert_nothing_made(big_dataset, tmp_path)


def test_resumed_and_init_from_configs_are_validated_as_they_are_loaded(big_dataset, tmp_path, capsys):
    for section, values, key in (("decode", {"beam_size": 0}, "decode.beam_size"), ("train", {"lr": 5.0}, "train.lr"),
                                 ("decoder", {"kind": "lrcn_2f", "num_layers": 3}, "decoder.num_layers")):
        bad = fake_run(tmp_path, big_dataset, f"bad-{section}", **{section: values})
        assert main(["-q", "train", "--resume", bad]) == 2
        assert key in capsys.readouterr().err
        assert main(train_args(big_dataset, tmp_path, [f"train.init_from={bad}"])) == 2
        assert key in capsys.readouterr().err
        assert_nothing_made(big_dataset, tmp_path)


@pytest.mark.parametrize("decoder, named", [({"kind": "lrcn_2f"}, "decoder.kind 'lrcn_2f'"),
                                            ({"tie_embeddings": True}, "decoder.tie_embeddings True")])
def test_init_from_a_run_of_another_shape_is_refused_first(big_dataset, tmp_path, capsys, decoder, named):
    start = fake_run(tmp_path, big_dataset, "start", decoder=decoder)
    assert main(train_args(big_dataset, tmp_path, [f"train.init_from={start}"])) == 2
    assert "train.init_from" in (err := capsys.readouterr().err) and named in err
    assert_nothing_made(big_dataset, tmp_path)


def test_the_library_entry_refuses_first_too(big_dataset, tmp_path):
    config = Config()
    config.data.split_json, config.train.runs_dir = str(big_dataset), str(tmp_path / "runs")
    config.train.label_smoothing = 1.5
    with pytest.raises(ConfigError, match="train.label_smoothing"):
        train(config, progress=False)
    assert_nothing_made(big_dataset, tmp_path)
