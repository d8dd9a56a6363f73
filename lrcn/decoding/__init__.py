"""Caption decoding on top of the decoder step interface: greedy, beam, diverse beam, sampling."""

from lrcn.decoding.processors import (
    MaxLength, MinLength, NoRepeatNGram, ProcessorList, SuppressTokens, Temperature, TopK, TopP,
    build_constraints, build_warpers,
)
from lrcn.decoding.search import (
    LENGTH_PENALTIES, STRATEGIES, DecodeConfig, DecodeOutput, Hypothesis, SampleOutput,
    add_decoding_arguments, beam_search, diverse_beam_search, generate, greedy, sample,
    sample_with_logprobs, to_hypotheses,
)

__all__ = [
    "DecodeConfig", "DecodeOutput", "Hypothesis", "SampleOutput", "LENGTH_PENALTIES", "STRATEGIES",
    "add_decoding_arguments", "generate", "greedy", "beam_search", "diverse_beam_search", "sample",
    "sample_with_logprobs", "to_hypotheses",
    "ProcessorList", "SuppressTokens", "MinLength", "MaxLength", "NoRepeatNGram", "Temperature",
    "TopK", "TopP", "build_constraints", "build_warpers",
]
