"""Batched beam search (lrcn.decoding) against a per-image reference, measured side by side.

    python -m experiments.benchmarks.beam_search [--images 1000] [--beam 5] [--vocab 10000]
        [--hidden 512] [--max-len 20] [--n-best 1] [--rounds 4] [--threads N]

The reference decodes the way older tutorials do: one image at a time, its k hypotheses as a
batch, Python lists of hypotheses and finished captions. It follows the same rules as
lrcn.decoding (the 2k best candidates, <end> among the k best finishes, the k best others stay
alive, stop once no alive beam can beat the worst kept caption), so both must return identical
captions and scores; the script counts the images where they differ.

The decoder is a paper-size ShowAndTell (512-d embeddings and LSTM) with random but
deterministic weights, sharpened so that it behaves like a trained captioner: LSTM weights x5,
output weights x40 and the <end> bias +10 give ~1.5 nats of entropy on the first word and
beam-5 captions of ~12 words (log-prob ~ -9); an untouched random decoder is nearly uniform over
the vocabulary and never ends a caption.

Both searches call the same ``model.step``, which at inference runs the decoder's
``inference_step`` (LSTM cell by hand, word gates looked up in a [V, 4H] table built during the
warm-up), so the speedup is the search's alone. For scale, our decode also runs with the plain
nn.LSTM step (``forward_steps`` on one word, what ``step`` does in training).

Also prints decoding throughput as a fraction of the output projection's throughput: the time
of the matrix multiplies [rows, H] @ [H, V] alone, with the row counts our decode ran at each
step, divided by the time of our whole decode (1.0 would mean decoding costs no more than
its output projection).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch.nn import functional as F

from lrcn.decoding import DecodeConfig, beam_search, to_hypotheses
from lrcn.models.decoders import ShowAndTell

PAD, BOS, EOS, UNK = 0, 1, 2, 3
NEG_INF = float("-inf")


def build_decoder(vocab: int, hidden: int, feature_dim: int, seed: int = 0) -> ShowAndTell:
    torch.manual_seed(seed)
    model = ShowAndTell(vocab, feature_dim, embed_dim=hidden, hidden_dim=hidden, dropout=0.5).eval()
    with torch.no_grad():
        for p in model.lstm.parameters():
            p.mul_(5.0)
        model.out.weight.mul_(40.0)
        model.out.bias[EOS] += 10.0
    return model


@torch.no_grad()
def reference_beam_search(model, features: torch.Tensor, k: int, n_best: int, max_len: int,
                          min_len: int) -> list[list[tuple[list[int], float]]]:
    """Per-image beam search with Python lists: for each image, its n-best (words, log-prob)."""
    results = []
    for i in range(len(features)):
        state = model.reorder(model.init_state(features[i:i + 1]), torch.zeros(k, dtype=torch.long))
        beams = [([], 0.0)] + [([], NEG_INF)] * (k - 1)         # (words, log-prob)
        finished: list[tuple[float, list[int]]] = []              # (log-prob, words), best first
        words = torch.full((k,), BOS)
        for t in range(max_len + 1):
            log_probs, state = model.step(words, state)         # [k, V]
            vocab = log_probs.size(1)
            log_probs[:, [BOS, UNK]] = NEG_INF
            if t < min_len:
                log_probs[:, EOS] = NEG_INF
            if t == max_len:
                log_probs[:, torch.arange(vocab) != EOS] = NEG_INF
            cand = torch.tensor([b[1] for b in beams])[:, None] + log_probs
            top, index = cand.view(-1).topk(2 * k)
            alive, rows = [], []
            for rank, (log_prob, j) in enumerate(zip(top.tolist(), index.tolist())):
                beam, word = divmod(j, vocab)
                if word == EOS:
                    if rank < k and log_prob > NEG_INF:
                        finished.append((log_prob, beams[beam][0]))
                elif len(alive) < k:
                    alive.append((beams[beam][0] + [word], log_prob))
                    rows.append(beam)
            finished = sorted(finished, key=lambda f: -f[0])[:n_best]
            if t == max_len:
                break
            if len(finished) == n_best and finished[-1][0] >= max(b[1] for b in alive):
                break          # alive log-probs only fall: none can beat the worst kept caption
            beams = alive
            state = model.reorder(state, torch.tensor(rows))
            words = torch.tensor([b[0][-1] for b in beams])
        results.append([(w, lp) for lp, w in finished])
    return results


class CountingSteps:
    """Passes the step interface through, recording the number of rows of every step."""

    def __init__(self, model):
        self.model, self.rows = model, []

    def init_state(self, features):
        return self.model.init_state(features)

    def step(self, words, state):
        self.rows.append(words.numel())
        return self.model.step(words, state)

    def reorder(self, state, index):
        return self.model.reorder(state, index)


class LSTMSteps(CountingSteps):
    """Steps with nn.LSTM (``forward_steps`` on one word) instead of the decoder's inference step."""

    def step(self, words, state):
        logits, state = self.model.forward_steps(words[:, None], state)
        return F.log_softmax(logits[:, 0].float(), dim=-1), state


def projection_time(model: ShowAndTell, rows: list[int]) -> float:
    """Seconds for the output projection alone at the given row counts, one multiply per step."""
    h = torch.randn(max(rows), model.out.in_features)
    start = time.perf_counter()
    for r in rows:
        F.linear(h[:r], model.out.weight, model.out.bias)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--vocab", type=int, default=10000)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--feature-dim", type=int, default=2048)
    ap.add_argument("--max-len", type=int, default=20)
    ap.add_argument("--n-best", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=4,
                    help="the reference runs in this many slices, our decode before, between and after them")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    load_before = os.getloadavg()[0]
    model = build_decoder(args.vocab, args.hidden, args.feature_dim)
    features = torch.randn(args.images, args.feature_dim, generator=torch.Generator().manual_seed(1))
    config = DecodeConfig(beam_size=args.beam, n_best=args.n_best, max_len=args.max_len)
    ids = dict(bos=BOS, eos=EOS, unk=UNK)

    def ours(steps=CountingSteps):
        counter = steps(model)
        start, cpu = time.perf_counter(), time.process_time()
        out = beam_search(counter, features, config, **ids)
        if steps is CountingSteps:
            ours_cpu.append(time.process_time() - cpu)
        return time.perf_counter() - start, out, counter.rows

    with torch.inference_mode():
        beam_search(model, features[:256], config, **ids)    # warm-up; builds the word-gate table
        beam_search(LSTMSteps(model), features[:64], config, **ids)
        reference_beam_search(model, features[:4], args.beam, args.n_best, args.max_len, config.min_len)
        # interleaved: our decode of all images, a slice of the reference, ours again, ... so that
        # load from other processes on this shared machine hits both alike
        ours_times, ours_cpu, proj_times, ref_time, ref_cpu, reference = [], [], [], 0.0, 0.0, []
        lstm_times = []
        for chunk in [*torch.arange(args.images).chunk(args.rounds), None]:
            seconds, out, rows = ours()
            ours_times.append(seconds)
            proj_times.append(projection_time(model, rows))
            seconds, lstm_out, _ = ours(LSTMSteps)
            lstm_times.append(seconds)
            if chunk is not None:
                start, cpu = time.perf_counter(), time.process_time()
                reference += reference_beam_search(model, features[chunk], args.beam, args.n_best,
                                                   args.max_len, config.min_len)
                ref_time += time.perf_counter() - start
                ref_cpu += time.process_time() - cpu

    def pairs(nbest) -> list[tuple[list[int], float]]:
        return [(h.tokens, h.log_prob) for h in nbest]

    def differ(mine, ref) -> bool:
        """Whether two n-best lists of (tokens, log-prob) differ in a caption or a log-prob (by more than 1e-4)."""
        return ([w for w, _ in mine] != [w for w, _ in ref]
                or any(abs(a - b) > 1e-4 for (_, a), (_, b) in zip(mine, ref)))

    hyps = to_hypotheses(out)
    mismatches = sum(differ(pairs(mine), ref) for mine, ref in zip(hyps, reference))
    lengths = [len(h[0].tokens) for h in hyps]
    print(f"load average before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f} "
          f"({os.cpu_count()} CPUs; other processes slow the many small ops of the reference most)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ShowAndTell H={args.hidden} "
          f"V={args.vocab}; {args.images} images, beam {args.beam}, n-best {args.n_best}, max_len {args.max_len}")
    print(f"captions: mean length {statistics.mean(lengths):.1f} words, mean log-prob "
          f"{statistics.mean(h[0].log_prob for h in hyps):.2f}; {len(rows)} steps, "
          f"{sum(rows)} row-steps (B*k*T would be {args.images * args.beam * len(rows)})")
    print(f"mismatches (captions or scores differ): {mismatches} of {args.images}; our decode with the "
          f"nn.LSTM step differs from it for "
          f"{sum(differ(pairs(a), pairs(b)) for a, b in zip(hyps, to_hypotheses(lstm_out)))}")
    print(f"per-image reference: {ref_time:8.2f} s  ({args.images / ref_time:7.1f} images/s)")
    median, proj = statistics.median(ours_times), statistics.median(proj_times)
    print(f"batched (ours):      {median:8.2f} s  ({args.images / median:7.1f} images/s; median of "
          f"{len(ours_times)} runs, best {min(ours_times):.2f} s)")
    lstm_median = statistics.median(lstm_times)
    print(f"batched, nn.LSTM step: {lstm_median:6.2f} s  (median of {len(lstm_times)}; the inference "
          f"step saves {1 - median / lstm_median:.0%})")
    print(f"speedup: {ref_time / median:.1f}x wall-clock; CPU time (all threads) {ref_cpu:.1f} s vs "
          f"{statistics.median(ours_cpu):.1f} s: {ref_cpu / statistics.median(ours_cpu):.1f}x")
    print(f"output projection alone at the same row counts: {proj:.2f} s (median) -> decoding runs at "
          f"{proj / median:.2f} of the projection matmul's throughput (best to best "
          f"{min(proj_times) / min(ours_times):.2f})")


if __name__ == "__main__":
    main()
