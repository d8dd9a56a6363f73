"""The training loop: teacher forcing with cross-entropy, validation by CIDEr-D, checkpoints, resume."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from lrcn.config import Config
from lrcn.data.loaders import CaptionTable, cached_features, load_samples, split
from lrcn.errors import ConfigError, TrainingError
from lrcn.inference import autocast, build_models, caption_features, decode_config
from lrcn.metrics import score
from lrcn.run import Run, resolve_device
from lrcn.text import Vocabulary
from lrcn.train.checkpoint import save_checkpoint
from lrcn.train.losses import build_loss

CAPTIONS_PER_IMAGE = 5   # each training image contributes this many captions per epoch


@dataclass
class Progress:
    epoch: int = 0          # the epoch in progress (0-based)
    batch: int = 0          # batches of that epoch already done
    step: int = 0           # optimizer steps since the start
    best_score: float = -math.inf
    best_epoch: int = -1
    stale_epochs: int = 0


def train(config: Config, resume: str | Path | None = None, progress: bool = True) -> Path:
    """Train (or continue) a run; returns its folder."""
    if resume is not None:
        run = Run.open(resume)
        config = run.config()
    else:
        run = Run.create(config)
    t = config.train
    device = resolve_device(t.device)
    torch.manual_seed(t.seed)

    samples = load_samples(config)
    train_samples, val_samples = split(samples, "train"), split(samples, "val")
    if t.val_max_images:
        val_samples = val_samples[: t.val_max_images]
    if resume is not None:
        vocab = run.vocab()
    elif config.train.init_from:
        vocab = Run.open(config.train.init_from).vocab()
        vocab.save(run.vocab_path)
    else:
        vocab = Vocabulary.build((c for s in train_samples for c in s.captions), config.data.min_word_count)
        vocab.save(run.vocab_path)

    encoder, decoder = build_models(config, len(vocab))
    fine_tune = config.encoder.trainable_blocks > 0
    if fine_tune:
        raise ConfigError("encoder.trainable_blocks > 0 needs the image pipeline (lrcn.train.finetune)")
    train_x, train_samples = cached_features(config, train_samples, encoder, device, progress)
    val_x, val_samples = cached_features(config, val_samples, encoder, device, progress)
    captions = CaptionTable.build(train_samples, vocab, config.data.max_caption_len)

    decoder.to(device)
    loss_fn = build_loss(config, vocab, train_samples)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    state = Progress()
    if resume is not None and run.last.exists():
        ckpt = run.checkpoint("last")
        decoder.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state = Progress(**ckpt["progress"])
        torch.set_rng_state(ckpt["rng"])
    elif config.train.init_from:
        decoder.load_state_dict(Run.open(config.train.init_from).checkpoint("best")["model"])

    writer = SummaryWriter(run.tb, purge_step=state.step if state.step else None)
    greedy = decode_config(config, beam_size=1, n_best=1, sample=False)
    references = {s.id: s.captions for s in val_samples}

    def checkpoint(path: Path) -> None:
        save_checkpoint(path, {"model": decoder.state_dict(), "optimizer": optimizer.state_dict(),
                               "progress": vars(state).copy(), "rng": torch.get_rng_state(),
                               "config": config.to_dict(), "vocab": vocab.words})

    n_batches = math.ceil(len(train_samples) / t.batch_size)
    while state.epoch < t.epochs:
        epoch = state.epoch
        lr = t.lr * t.lr_decay ** (epoch // max(1, t.lr_decay_every))
        for group in optimizer.param_groups:
            group["lr"] = lr
        order = torch.randperm(len(train_samples), generator=torch.Generator().manual_seed(t.seed * 100_003 + epoch))
        batches = order.split(t.batch_size)
        decoder.train()
        bar = tqdm(total=n_batches, initial=state.batch, desc=f"epoch {epoch + 1}/{t.epochs}", disable=not progress,
                   leave=False)
        started = time.perf_counter()
        for b in range(state.batch, n_batches):
            rows = batches[b]
            g = torch.Generator().manual_seed(t.seed * 100_003 + epoch * 10_007 + b)
            words = captions.sample(rows, CAPTIONS_PER_IMAGE, g).to(device)            # [B*S, L]
            with autocast(device, t.bf16):
                loss, logs = loss_fn(decoder, train_x[rows].to(device), words, rows, state.step)
            if not torch.isfinite(loss):
                raise TrainingError(f"the loss became {loss.item()} at epoch {epoch + 1}, step {state.step}; "
                                    f"training stopped and {run.last} keeps the last good weights. Lower "
                                    f"train.lr or set train.grad_clip")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(decoder.parameters(), t.grad_clip or float("inf"))
            optimizer.step()
            state.step += 1
            state.batch = b + 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if state.step % t.log_every == 0 or b == n_batches - 1:
                writer.add_scalar("train/loss", loss.item(), state.step)
                writer.add_scalar("train/grad_norm", grad_norm.item(), state.step)
                writer.add_scalar("train/lr", lr, state.step)
                for name, value in logs.items():
                    writer.add_scalar(f"train/{name}", float(value), state.step)
            if t.checkpoint_every and state.step % t.checkpoint_every == 0 and b < n_batches - 1:
                checkpoint(run.last)
        bar.close()

        hyps = caption_features(decoder, val_x, vocab, greedy, device=device, bf16=t.bf16)
        candidates = {s.id: vocab.decode(h[0].tokens) for s, h in zip(val_samples, hyps)}
        scores = score(candidates, references, metrics=("Bleu", "ROUGE_L", "CIDEr"), backend="fast")
        for name, value in scores.corpus.items():
            writer.add_scalar(f"val/{name}", value, state.step)
        writer.add_text("val/samples", "\n\n".join(f"{s.id}: {candidates[s.id]}" for s in val_samples[:8]),
                        state.step)
        value = scores.corpus[t.val_metric]
        improved = value > state.best_score
        if improved:
            state.best_score, state.best_epoch, state.stale_epochs = value, epoch, 0
        else:
            state.stale_epochs += 1
        tqdm.write(f"epoch {epoch + 1}/{t.epochs}  loss {loss.item():.3f}  val {t.val_metric} {value:.3f}"
                   f"{'  (best)' if improved else ''}  {time.perf_counter() - started:.1f}s")
        state.epoch, state.batch = epoch + 1, 0
        if t.patience and state.stale_epochs >= t.patience:
            state.epoch = t.epochs
        if improved:
            checkpoint(run.best)
        checkpoint(run.last)
    writer.close()
    return run.dir
