import pytest

from lrcn.config import Config, load_config, save_config
from lrcn.errors import ConfigError


def test_base_inheritance_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("name: base\ntrain:\n  lr: 0.001\n  epochs: 3\ndecoder:\n  kind: lrcn_1u\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\nname: child\ntrain:\n  epochs: 5\n")
    c = load_config(tmp_path / "child.yaml", ["train.lr=1e-4", "decoder.hidden_dim=64", "decode.beam_size=5"])
    assert (c.name, c.train.epochs, c.train.lr, c.decoder.kind) == ("child", 5, 1e-4, "lrcn_1u")
    assert c.decoder.hidden_dim == 64 and c.decode.beam_size == 5
    assert c.train.batch_size == Config().train.batch_size


def test_saved_config_loads_back_identically(tmp_path):
    c = load_config(None, ["name=x", "train.lr=0.5", "data.image_root=/tmp/images"])
    save_config(c, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == c


@pytest.mark.parametrize("override, message", [
    ("train.lrr=1", "unknown config key 'train.lrr'"),
    ("trian.lr=1", "unknown config key 'trian'"),
    ("train.epochs=many", "'train.epochs': expected int"),
    ("train.bf16=3", "'train.bf16': expected bool"),
    ("decode=3", "'decode' must be a mapping"),
    ("novalue", "must look like section.key=value"),
])
def test_bad_keys_and_values_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="inherits from itself"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "evil.yaml").write_text("name: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "evil.yaml")


def test_off_and_no_in_overrides_are_words_and_quoting_is_asked_for_in_files(tmp_path):
    config = load_config(overrides=["decoder.frame_deltas=off", "encoder.crop=false", "encoder.flip_average=true"])
    assert (config.decoder.frame_deltas, config.encoder.crop, config.encoder.flip_average) == ("off", False, True)
    path = tmp_path / "c.yaml"
    path.write_text("decoder:\n  frame_deltas: off\n")
    with pytest.raises(ConfigError, match="decoder.frame_deltas.*quote it"):
        load_config(path)
