"""Caption decoding on top of the decoder step interface: greedy, beam, diverse beam, sampling."""

from lrcn.decoding.processors import (
    MaxLength, MinLength, NoRepeatNGram, ProcessorList, SuppressTokens, Temperature, TopK, TopP,
    build_constraints, build_warpers,
)
from lrcn.decoding.search import (
    LENGTH_PENALTIES, RERANK_METRICS, SHARED_OPTIONS, STRATEGIES, DecodeConfig, DecodeOutput, Hypothesis, SampleOutput,
    Strategy, beam_search, diverse_beam_search, generate, greedy, sample, sample_with_logprobs, to_hypotheses,
)

__all__ = [
    "DecodeConfig", "DecodeOutput", "Hypothesis", "SampleOutput", "LENGTH_PENALTIES", "RERANK_METRICS",
    "SHARED_OPTIONS",
    "STRATEGIES", "Strategy", "generate", "greedy", "beam_search", "diverse_beam_search", "sample",
    "sample_with_logprobs", "to_hypotheses",
    "ProcessorList", "SuppressTokens", "MinLength", "MaxLength", "NoRepeatNGram", "Temperature",
    "TopK", "TopP", "build_constraints", "build_warpers",
]
