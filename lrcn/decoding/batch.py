"""Captions for many feature rows at once: the decoding strategies in batches, optionally in
bfloat16 autocast, with an optional consensus re-ranking of the candidates (lrcn.decoding.rerank).
Training's validation, ``lrcn evaluate`` and ``lrcn caption`` all decode through here."""

from __future__ import annotations

import contextlib
import dataclasses

import torch

from lrcn.decoding.rerank import ConsensusReranker
from lrcn.decoding.search import DecodeConfig, Hypothesis, StepModel, generate
from lrcn.text import Vocabulary


def autocast(device: torch.device, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@torch.inference_mode()
def caption_features(decoder: StepModel, features: torch.Tensor, vocab: Vocabulary, decode: DecodeConfig,
                     batch_size: int = 256, device: torch.device = torch.device("cpu"), bf16: bool = False,
                     reranker: ConsensusReranker | None = None,
                     rerank_features: torch.Tensor | None = None) -> list[list[Hypothesis]]:
    """n-best hypotheses for each row of ``features`` (decoded in batches on ``device``). With a
    ``reranker`` (``decode.rerank``), every candidate of the search is re-ordered by consensus first,
    the neighbours found by ``rerank_features`` (default ``features``: those the reranker's training
    features come from; an ensemble passes its first member's)."""
    decoder.eval()
    search = dataclasses.replace(decode, n_best=max(decode.n_best, decode.beam_size)) if reranker else decode
    out: list[list[Hypothesis]] = []
    for chunk in features.split(batch_size):
        with autocast(device, bf16):
            out += generate(decoder, chunk.to(device), search, bos=vocab.start, eos=vocab.end, unk=vocab.unk,
                            pad=vocab.pad)
    if reranker is not None:
        queries = features if rerank_features is None else rerank_features
        orders = reranker.order(queries, [[vocab.decode(h.tokens) for h in nbest] for nbest in out])
        out = [[nbest[j] for j in order[:decode.n_best]] for nbest, order in zip(out, orders)]
    return out
