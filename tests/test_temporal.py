"""Temporal encoders and video caption decoders: the step interface, learning, and decoding unchanged."""

import pytest
import torch

from conftest import assert_step_interface, overfit_and_replay
from lrcn.decoding import DecodeConfig, generate
from lrcn.errors import ConfigError
from lrcn.models.registry import DECODERS, build_decoder
from lrcn.config import Config, validate
from lrcn.models.factory import build_models
from lrcn.models.registry import VIDEO_DECODERS
from lrcn.models.temporal import S2VT, FrameDeltas, VideoCaptioner, build_temporal, delta_dims

V, D, T = 23, 12, 5
START, END = 1, 2


def make(kind, **kw):
    torch.manual_seed(0)
    return build_decoder(kind, V, D, embed_dim=16, hidden_dim=20, **kw)


def test_registry_has_every_temporal_encoder_with_every_image_decoder():
    assert set(VIDEO_DECODERS) == {"s2vt"} | {f"{t}+{d}" for t in ("mean", "lstm", "bilstm") for d in DECODERS}
    assert isinstance(make("s2vt"), S2VT)
    model = make("bilstm+lrcn_2f")
    assert isinstance(model, VideoCaptioner) and model.vocab_size == V and model.feature_dim == D


def test_temporal_encoders_reduce_as_documented():
    torch.manual_seed(0)
    frames = torch.randn(3, T, D)
    clip, steps = build_temporal("mean", D)(frames)
    torch.testing.assert_close(clip, frames.mean(1))
    lstm = build_temporal("lstm", D, hidden_dim=7).eval()
    clip, steps = lstm(frames)
    assert clip.shape == (3, 7) and steps.shape == (3, T, 7)
    torch.testing.assert_close(clip, steps[:, -1])                        # last hidden state
    bi = build_temporal("bilstm", D, hidden_dim=7).eval()
    clip, steps = bi(frames)
    assert clip.shape == (3, 14) and bi.out_dim == 14
    # forward LSTM after the last frame, backward LSTM after reading back to the first frame
    torch.testing.assert_close(clip, torch.cat([steps[:, -1, :7], steps[:, 0, 7:]], -1))
    with pytest.raises(ConfigError, match="'gru' is unknown"):
        build_temporal("gru", D)


def test_frame_order_matters_to_recurrent_encoders_only():
    torch.manual_seed(1)
    frames, reverse = torch.randn(2, T, D), torch.arange(T - 1, -1, -1)
    words = torch.randint(0, V, (2, 4))
    mean, lstm, s2vt = make("mean+show_and_tell").eval(), make("lstm+show_and_tell").eval(), make("s2vt").eval()
    torch.testing.assert_close(mean(frames, words), mean(frames[:, reverse], words))
    for model in (lstm, s2vt):
        assert not torch.allclose(model(frames, words), model(frames[:, reverse], words), atol=1e-4)


def test_frame_deltas_append_the_change_of_the_last_features_since_the_previous_frame():
    frames = torch.tensor([[[1., 10., 100.], [2., 30., 90.], [4., 60., 50.]]])      # [1, T=3, D=3]
    torch.testing.assert_close(FrameDeltas(2)(frames), torch.tensor(
        [[[1., 10., 100., 0., 0.], [2., 30., 90., 20., -10.], [4., 60., 50., 30., -40.]]]))
    torch.testing.assert_close(FrameDeltas(3)(frames)[..., 3:], torch.tensor([[[0., 0., 0.], [1., 20., -10.], [2., 30., -40.]]]))
    torch.testing.assert_close(FrameDeltas(2, gain=10.0)(frames)[..., 3:], torch.tensor([[[0., 0.], [200., -100.], [300., -400.]]]))
    assert FrameDeltas(0)(frames) is frames
    assert FrameDeltas(2)(frames[:, :1]).tolist() == [[[1., 10., 100., 0., 0.]]]      # one frame: no motion
    assert [delta_dims(k, 1344, 8) for k in ("off", "where", "all")] == [0, 64, 1344]
    with pytest.raises(ConfigError, match="encoder.attention_map is 0"):
        delta_dims("where", 1280, 0)
    with pytest.raises(ConfigError, match="off, where, all"):
        delta_dims("flow", 1280, 8)
    for gain in (0.0, -1.0, float("nan"), "10"):
        with pytest.raises(ConfigError, match="delta_gain"):
            FrameDeltas(4, gain)


@pytest.mark.parametrize("kind", ["s2vt", "mean+show_and_tell", "bilstm+lrcn_2f"])
def test_frame_deltas_let_every_video_decoder_see_the_order(kind):
    """With deltas even mean pooling tells a clip from its reverse; inputs stay [B, T, D]."""
    torch.manual_seed(1)
    frames, reverse = torch.randn(2, T, D), torch.arange(T - 1, -1, -1)
    words = torch.randint(0, V, (2, 4))
    model = make(kind, delta_dims=4).eval()
    assert model.feature_dim == D
    assert not torch.allclose(model(frames, words), model(frames[:, reverse], words), atol=1e-4)
    assert_step_interface(model, torch.randn(4, T, D), torch.randint(0, V, (4, 7)))
    assert overfit_and_replay(make(kind, delta_dims=4, dropout=0.0), *_tiny_task()) < 0.02


def test_frame_deltas_in_the_config():
    config = Config()
    config.encoder.pretrained, config.encoder.image_size, config.encoder.attention_map = False, 64, 8
    config.decoder.kind, config.decoder.frame_deltas, config.decoder.delta_gain = "s2vt", "where", 10.0
    config.data.modality = "video"
    _, decoder = build_models(config, V)
    assert decoder.deltas.dims == 64 and decoder.deltas.gain == 10.0
    assert decoder.frame_embed.in_features == decoder.feature_dim + 64
    config.decoder.kind, config.data.modality = "show_and_tell", "image"
    with pytest.raises(ConfigError, match="needs a video decoder"):
        validate(config)


@pytest.mark.parametrize("kind", sorted(VIDEO_DECODERS))
def test_teacher_forcing_agrees_with_steps_and_reorder_gathers(kind):
    assert_step_interface(make(kind).eval(), torch.randn(4, T, D), torch.randint(0, V, (4, 7)))


def test_an_image_feature_is_a_one_frame_clip():
    features, words = torch.randn(3, D), torch.randint(0, V, (3, 4))
    for kind in ("s2vt", "lstm+lrcn_2u"):
        model = make(kind).eval()
        torch.testing.assert_close(model(features, words), model(features[:, None], words))


def _tiny_task(seed=1):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(4, T, D, generator=g)
    words = torch.cat([torch.full((4, 1), START), torch.randint(4, V, (4, 6), generator=g),
                       torch.full((4, 1), END)], 1)
    return frames, words


@pytest.mark.parametrize("kind", ["s2vt", "mean+show_and_tell", "lstm+show_and_tell", "bilstm+show_and_tell",
                                  "lstm+lrcn_2f", "bilstm+init_state"])
def test_overfits_a_tiny_batch_of_clips(kind):
    """4 clips of 5 frames, 4 captions of 6 words: near-zero loss, and greedy stepping replays them."""
    model = make(kind, dropout=0.0)
    frames, words = _tiny_task()
    assert overfit_and_replay(model, frames, words) < 0.02


@pytest.mark.parametrize("kind", ["s2vt", "bilstm+lrcn_2f"])
def test_decoding_strategies_work_unchanged_on_video_models(kind):
    model = make(kind, dropout=0.0)
    frames, words = _tiny_task(seed=2)
    overfit_and_replay(model, frames, words)
    expected = words[:, 1:-1].tolist()
    for config in (DecodeConfig(beam_size=1), DecodeConfig(beam_size=3, n_best=3),
                   DecodeConfig(beam_size=4, groups=2, n_best=2)):
        hyps = generate(model, frames, config, bos=START, eos=END, unk=3, pad=0)
        assert len(hyps) == 4 and all(len(h) == config.n_best for h in hyps)
        assert [h[0].tokens for h in hyps] == expected          # the best caption is the trained one
    # beam search ranks by summed log-prob: its best is at least as likely as greedy's
    greedy = generate(model, frames, DecodeConfig(beam_size=1), bos=START, eos=END)
    beam = generate(model, frames, DecodeConfig(beam_size=3), bos=START, eos=END)
    assert all(b[0].log_prob >= g[0].log_prob - 1e-5 for b, g in zip(beam, greedy))
    samples = generate(model, frames, DecodeConfig(sample=True, n_best=2, seed=0, max_len=8), bos=START, eos=END)
    assert all(len(s) == 2 and all(len(h.tokens) <= 8 for h in s) for s in samples)


def test_s2vt_refuses_other_stack_depths_and_unknown_kinds_list_video_ones():
    with pytest.raises(ConfigError, match="exactly two LSTMs"):
        make("s2vt", num_layers=3)
    with pytest.raises(ConfigError, match="s2vt"):
        make("transformer")
