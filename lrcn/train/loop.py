"""The training loop: teacher forcing (or any loss in lrcn.train.losses), validation by CIDEr-D,
best/last checkpoints, exact resume, optional fine-tuning of the encoder's top blocks, and
DistributedDataParallel under torchrun."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from lrcn.config import VALIDATION_METRICS, Config, validate as validate_config, value_of
from lrcn.data.loaders import (CaptionTable, cached_features, cached_views, feature_store, load_samples, split,
                               view_store)
from lrcn.data.media import ImageFolderDataset, collate_skip_bad
from lrcn.data.records import Sample
from lrcn.decoding.batch import autocast, caption_features
from lrcn.errors import ConfigError, TrainingError
from lrcn.metrics import score
from lrcn.models.factory import config_decoder, config_encoder
from lrcn.run import Run, resolve_device
from lrcn.text import Vocabulary
from lrcn.train import distributed
from lrcn.train.checkpoint import save_checkpoint
from lrcn.train.losses import build_loss

CAPTIONS_PER_IMAGE = 5   # each training image contributes this many captions per epoch

# the keys that shape the decoder's weights (and so must agree with train.init_from's run)
WEIGHT_SHAPING_KEYS = ("decoder.kind", "decoder.embed_dim", "decoder.hidden_dim", "decoder.num_layers",
                       "decoder.frame_deltas", "decoder.concepts", "decoder.tie_embeddings", "encoder.name",
                       "encoder.attention_map")


@dataclass
class Progress:
    epoch: int = 0          # the epoch in progress (0-based)
    batch: int = 0          # batches of that epoch already done
    step: int = 0           # optimizer steps since the start
    best_score: float = -math.inf
    best_epoch: int = -1
    stale_epochs: int = 0


class TrainStep(nn.Module):
    """What DistributedDataParallel wraps: the encoder (when fine-tuned), the decoder and the loss,
    so that the gradients of any loss, however it runs the decoder, are synchronised."""

    def __init__(self, encoder: nn.Module | None, decoder: nn.Module, loss_fn):
        super().__init__()
        self.encoder, self.decoder, self.loss_fn = encoder, decoder, loss_fn

    def forward(self, x: Tensor, words: Tensor, rows: Tensor, step: int):
        features = self.encoder(x) if self.encoder is not None else x     # images -> [B, D] when fine-tuning
        return self.loss_fn(self.decoder, features, words, rows, step)


def _vocabulary(config: Config, run: Run, resume: bool, train_samples: list[Sample]) -> Vocabulary:
    if resume and run.vocab_path.exists():   # (a run killed before writing it builds it again, identically)
        return run.vocab()
    if config.train.init_from:
        vocab = Run.open(config.train.init_from).vocab()
    else:
        vocab = Vocabulary.build((c for s in train_samples for c in s.captions), config.data.min_word_count)
    vocab.save(run.vocab_path)
    return vocab


def _check_start(config: Config, start: Config) -> None:
    """Refuse a ``train.init_from`` run whose (validated) config makes weights of other shapes."""
    differ = [f"{key} {value_of(start, key)!r} (this run: {value_of(config, key)!r})"
              for key in WEIGHT_SHAPING_KEYS if value_of(start, key) != value_of(config, key)]
    if differ:
        raise ConfigError(f"train.init_from={config.train.init_from}: its weights do not fit this run's models; "
                          f"it has {', '.join(differ)}")


def train(config: Config | None, resume: str | Path | None = None, progress: bool = True) -> Path:
    """Train (or continue, with ``resume=RUN_DIR``) a run; returns its folder. The config (or the
    resumed run's) is validated before any data is read, and so is that of a new run's
    ``train.init_from``."""
    config = Run.open(resume).config() if resume is not None else validate_config(config)
    if config.train.init_from and resume is None:
        _check_start(config, Run.open(config.train.init_from).config())
    device = resolve_device(config.train.device)
    dist = distributed.setup(device)
    device = dist.device(device)
    if resume is not None:
        run = Run.open(resume)
    t = config.train
    torch.manual_seed(t.seed)
    encoder = config_encoder(config)             # before any data: what only the backbone knows (its blocks)
    samples = load_samples(config)               # bad annotations fail before a run folder is made
    if resume is None:
        run = Run.create(config) if dist.main else Run(Path(config.train.runs_dir) / config.name)
    dist.barrier()
    progress = progress and dist.main

    train_samples, val_samples = split(samples, "train"), split(samples, "val")
    if t.val_max_images:
        val_samples = val_samples[: t.val_max_images]
    vocab = _vocabulary(config, run, resume is not None, train_samples) if dist.main else None
    dist.barrier()
    vocab = vocab or run.vocab()

    decoder = config_decoder(config, len(vocab), encoder.out_dim)
    fine_tune = config.encoder.trainable_blocks > 0
    if fine_tune:
        # images go through the encoder at every step; unreadable ones are dropped from the batches
        train_x = val_x = None
        encoder.to(device)
    else:
        # extracting draws from the global random stream (DataLoader seeds); whether the features were
        # already cached must not change training's random numbers, or a resumed run would differ
        with torch.random.fork_rng(devices=[]):
            if dist.main:                      # one process extracts, the others then read the store
                feature_store(config, train_samples, encoder, device=device, progress=progress)
                feature_store(config, val_samples, encoder, device=device, progress=progress)
            dist.barrier()
            train_x, train_samples = cached_features(config, train_samples, encoder, device, False)
            val_x, val_samples = cached_features(config, val_samples, encoder, device, False)
            if config.data.train_views:             # [N, 1 + K, ...]: each image and its random crops
                if dist.main:
                    view_store(config, train_samples, encoder, device, progress)
                dist.barrier()
                train_x = cached_views(config, train_samples, train_x, encoder, device, False)
    captions = CaptionTable.build(train_samples, vocab, config.data.max_caption_len)

    decoder.to(device)
    loss_fn = build_loss(config, vocab, train_samples)
    module = TrainStep(encoder if fine_tune else None, decoder, loss_fn)
    ddp = nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None) \
        if dist.active else module
    groups = [{"params": list(decoder.parameters()), "base_lr": t.lr}]
    if fine_tune:
        groups += [{**g, "base_lr": config.encoder.lr} for g in encoder.param_groups(config.encoder.lr)]
    optimizer = torch.optim.Adam(groups, lr=t.lr, weight_decay=t.weight_decay)
    # the weights that are validated and kept as best.pt: the decoder's, or their moving average
    average = AveragedModel(decoder, multi_avg_fn=get_ema_multi_avg_fn(t.ema), use_buffers=True) if t.ema else None
    kept = average.module if average is not None else decoder
    state = Progress()
    if resume is not None and run.last.exists():
        ckpt = run.checkpoint("last")
        decoder.load_state_dict(ckpt["model"])
        if average is not None:
            average.load_state_dict(ckpt["average"])
        if fine_tune:
            encoder.load_state_dict(ckpt["encoder"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state = Progress(**ckpt["progress"])
        torch.set_rng_state(ckpt["rng"])
    elif t.init_from:
        start = Run.open(t.init_from).checkpoint("best")
        decoder.load_state_dict(start["model"])
        if "encoder" in start:
            encoder.load_state_dict(start["encoder"])

    writer = SummaryWriter(run.tb, purge_step=state.step or None) if dist.main else None
    greedy = config.decode.greedy()
    references = {s.id: s.captions for s in val_samples}
    image_set = ImageFolderDataset([s.path for s in train_samples], encoder.transform,
                                   max_pixels=config.data.max_pixels)

    def stopped(what: str, step: int) -> TrainingError:
        kept = f"{run.last} keeps the last good weights" if run.last.exists() else "no checkpoint was written yet"
        return TrainingError(f"{what} in training step {step}; training stopped and {kept}. "
                             f"Lower train.lr or set train.grad_clip")

    def checkpoint(path: Path) -> None:
        if not all(bool(torch.isfinite(p).all()) for p in module.parameters()):   # never save NaN/Inf weights
            raise stopped("the weights became NaN or infinite", state.step)
        if dist.main:
            payload = {"model": (kept if path == run.best else decoder).state_dict(),
                       "optimizer": optimizer.state_dict(), "progress": vars(state).copy(),
                       "rng": torch.get_rng_state(), "config": config.to_dict(), "vocab": vocab.words}
            if average is not None:
                payload["average"] = average.state_dict()
            save_checkpoint(path, {**payload, "encoder": encoder.state_dict()} if fine_tune else payload)
        dist.barrier()

    def batches(order: list[Tensor], start: int, epoch: int) -> Iterator[tuple[int, Tensor, Tensor, Tensor]]:
        """(batch number, this process's rows, their positions in the global batch, inputs)."""
        local = [rows[dist.rank::dist.world] for rows in order]
        positions = [torch.arange(len(rows))[dist.rank::dist.world] for rows in order]
        if not fine_tune:
            for b in range(start, len(order)):
                if config.data.train_views:     # one of each image's views, drawn for the global batch
                    g = torch.Generator().manual_seed(7_919 * (t.seed * 100_003 + epoch * 10_007 + b) + 1)
                    view = torch.randint(train_x.shape[1], (len(order[b]),), generator=g)[positions[b]]
                    yield b, local[b], positions[b], train_x[local[b], view]
                else:
                    yield b, local[b], positions[b], train_x[local[b]]
            return
        loader = torch.utils.data.DataLoader(image_set, batch_sampler=[r.tolist() for r in local[start:]],
                                             num_workers=config.data.num_workers, collate_fn=collate_skip_bad,
                                             generator=torch.Generator())  # not the global stream: exact resume
        for b, batch in zip(range(start, len(order)), loader):
            for i in batch.errors:
                tqdm.write(f"skipped {train_samples[i].path}: {batch.errors[i]}")
            keep = torch.tensor([r in batch.indices for r in local[b].tolist()], dtype=torch.bool)
            yield b, local[b][keep], positions[b][keep], batch.images

    n_batches = math.ceil(len(train_samples) / t.batch_size)
    while state.epoch < t.epochs:
        epoch = state.epoch
        decay = t.lr_decay ** (epoch // max(1, t.lr_decay_every))
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * decay
        order = torch.randperm(len(train_samples), generator=torch.Generator().manual_seed(t.seed * 100_003 + epoch))
        order = list(order.split(t.batch_size))
        module.train()
        bar = tqdm(total=n_batches, initial=state.batch, desc=f"epoch {epoch + 1}/{t.epochs}", disable=not progress,
                   leave=False)
        started = time.perf_counter()
        loss_value = float("nan")
        for b, rows, positions, x in batches(order, state.batch, epoch):
            g = torch.Generator().manual_seed(t.seed * 100_003 + epoch * 10_007 + b)
            words = captions.sample(order[b], CAPTIONS_PER_IMAGE, g)                 # [B*S, L], global batch
            words = words.view(len(order[b]), CAPTIONS_PER_IMAGE, -1)[positions].flatten(0, 1).to(device)
            with autocast(device, t.bf16):
                total, count, logs = ddp(x.to(device), words, rows, state.step)
            count = dist.sum(torch.as_tensor(count, dtype=torch.float32, device=device)).clamp(min=1)
            loss = total * dist.world / count                                       # DDP averages over ranks
            loss_value = (dist.sum(total.detach().float()) / count).item()
            if not math.isfinite(loss_value):
                raise stopped(f"the loss became {loss_value}", state.step + 1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(module.parameters(), t.grad_clip or float("inf"))
            if not torch.isfinite(grad_norm):           # the step would make the weights NaN
                raise stopped(f"the gradient norm became {grad_norm.item()}", state.step + 1)
            optimizer.step()
            if average is not None:
                average.update_parameters(decoder)
            state.step += 1
            state.batch = b + 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}")
            if writer and (state.step % t.log_every == 0 or b == n_batches - 1):
                writer.add_scalar("train/loss", loss_value, state.step)
                writer.add_scalar("train/grad_norm", grad_norm.item(), state.step)
                writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], state.step)
                for name, value in logs.items():
                    writer.add_scalar(f"train/{name}", float(value), state.step)
            if t.checkpoint_every and state.step % t.checkpoint_every == 0 and b < n_batches - 1:
                checkpoint(run.last)
        bar.close()

        value = validate(config, encoder, kept, vocab, val_samples, val_x, greedy, references, dist, device,
                         writer, state.step, fine_tune)
        improved = value > state.best_score
        if improved:
            state.best_score, state.best_epoch, state.stale_epochs = value, epoch, 0
        else:
            state.stale_epochs += 1
        if dist.main:
            tqdm.write(f"epoch {epoch + 1}/{t.epochs}  loss {loss_value:.3f}  val {t.val_metric} {value:.3f}"
                       f"{'  (best)' if improved else ''}  {time.perf_counter() - started:.1f}s")
        state.epoch, state.batch = epoch + 1, 0
        if t.patience and state.stale_epochs >= t.patience:
            state.epoch = t.epochs
        if improved:
            checkpoint(run.best)
        checkpoint(run.last)
    if writer:
        writer.close()
    return run.dir


def validate(config: Config, encoder, decoder, vocab: Vocabulary, samples: list[Sample], features: Tensor | None,
             decode, references: dict, dist: distributed.Dist, device: torch.device, writer, step: int,
             fine_tune: bool) -> float:
    """Greedy captions of the val split, scored by CIDEr-D (each process decodes a shard)."""
    mine = samples[dist.rank::dist.world]
    if fine_tune:   # the encoder changes during training: encode the images afresh
        encoder.eval()
        loader = torch.utils.data.DataLoader(ImageFolderDataset([s.path for s in mine], encoder.transform,
                                                                max_pixels=config.data.max_pixels),
                                             batch_size=config.encoder.batch_size,
                                             num_workers=config.data.num_workers, collate_fn=collate_skip_bad)
        kept, chunks = [], []
        with torch.inference_mode():
            for batch in loader:
                if batch.indices:
                    kept += [mine[i] for i in batch.indices]
                    chunks.append(encoder(batch.images.to(device)))
        mine, x = kept, torch.cat(chunks) if chunks else torch.zeros(0, encoder.out_dim)
    else:
        x = features[dist.rank::dist.world]
    hyps = caption_features(decoder, x, vocab, decode, device=device, bf16=config.train.bf16) if len(mine) else []
    candidates = {}
    for part in dist.gather({s.id: vocab.decode(h[0].tokens) for s, h in zip(mine, hyps)}):
        candidates.update(part)
    if not candidates:
        raise ConfigError("no validation image could be read; check the val split's images")
    scores = score(candidates, {i: references[i] for i in candidates}, metrics=VALIDATION_METRICS,
                   backend="fast")
    if writer:
        for name, value in scores.corpus.items():
            writer.add_scalar(f"val/{name}", value, step)
        writer.add_text("val/samples", "\n\n".join(f"{i}: {c}" for i, c in list(candidates.items())[:8]), step)
    return scores.corpus[config.train.val_metric]
