import hashlib
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from lrcn.data.shapes import generate_shapes


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory):
    """A 60-image shapes dataset at 64 px (48 train, 6 val, 6 test)."""
    out = tmp_path_factory.mktemp("shapes")
    return generate_shapes(out, n=60, seed=3, image_size=64)


def tiny_overrides(split_json, runs_dir, **extra) -> list[str]:
    """Config overrides for a seconds-long training run on ``tiny_shapes``."""
    values = {"data.split_json": split_json, "train.runs_dir": runs_dir, "encoder.image_size": 64,
              "encoder.crop": False, "data.num_workers": 0, "decoder.embed_dim": 32, "decoder.hidden_dim": 32,
              "decoder.dropout": 0.0, "train.epochs": 2, "train.batch_size": 8, "train.lr": 0.01, **extra}
    return [f"{k}={v}" for k, v in values.items()]


def assert_step_interface(model, features, words) -> None:
    """``model`` (a caption decoder in eval mode) keeps the step interface: stepping word by word
    through ``words`` [B, L] gives the log-softmax of its teacher-forced logits [B, L, V], every
    state tensor is batch-first, and ``reorder`` of the state equals encoding the gathered rows."""
    B, L = words.shape
    logits = model(features, words)
    assert logits.shape == (B, L, model.vocab_size)
    state = model.init_state(features)
    assert all(s.shape[0] == B for s in state)
    steps = []
    for t in range(L):
        log_probs, state = model.step(words[:, t], state)
        assert log_probs.shape == (B, model.vocab_size)
        steps.append(log_probs)
    torch.testing.assert_close(torch.stack(steps, 1), F.log_softmax(logits, -1), atol=1e-5, rtol=1e-5)
    index = torch.tensor([B - 1, B - 1, 0])
    first = torch.ones(len(index), dtype=torch.long)
    a, _ = model.step(first, model.reorder(model.init_state(features), index))
    b, _ = model.step(first, model.init_state(features[index]))
    torch.testing.assert_close(a, b)


def overfit_and_replay(model, features, words, steps: int = 150, lr: float = 3e-2) -> float:
    """Teacher-force ``model`` on ``words`` [B, L] (<start> ... <end>) for ``features`` with Adam and
    return the last loss; then check that greedy stepping from <start> replays every caption."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = F.cross_entropy(model(features, words[:, :-1]).flatten(0, 1), words[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    state, word, out = model.init_state(features), words[:, 0], []
    for _ in range(words.shape[1] - 1):
        log_probs, state = model.step(word, state)
        word = log_probs.argmax(-1)
        out.append(word)
    assert torch.equal(torch.stack(out, 1), words[:, 1:])
    return loss.item()


def file_digests(root: Path) -> dict[str, str]:
    """SHA-256 of every file below ``root``, by relative path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def pytest_configure(config):
    # The tests' models are tiny: one thread is faster than two fighting over a busy machine.
    torch.set_num_threads(1)
