"""Batched beam search (lrcn.decoding) against a per-image reference, measured side by side.

    python -m experiments.benchmarks.beam_search [--images 1000] [--beam 5] [--vocab 10000]
        [--hidden 512] [--max-len 20] [--n-best 1] [--rounds 4] [--threads N]

The reference decodes the way older tutorials do: one image at a time, its k hypotheses as a
batch, Python lists of hypotheses and finished captions. It follows the same rules as
lrcn.decoding (the 2k best candidates, <end> among the k best finishes, the k best others stay
alive, stop once no alive beam can beat the worst kept caption), so both must return identical
captions and scores; the script counts the images where they differ. Our decode also leaves out
the beams that can no longer win (``lrcn.decoding``'s live beams); the reference steps all k,
which costs it hardly more: its [k, H] @ [H, V] multiply is bound by reading the weights.

The decoder is a paper-size ShowAndTell (512-d embeddings and LSTM) with random but
deterministic weights, sharpened so that it behaves like a trained captioner: LSTM weights x5,
output weights x40 and the <end> bias +10 give ~1.5 nats of entropy on the first word and
beam-5 captions of ~12 words (log-prob ~ -9); an untouched random decoder is nearly uniform over
the vocabulary and never ends a caption.

Each search runs with two steps, so the table separates the search from the step:

* the *nn.LSTM step*, the step as tutorials write it (embedding, nn.LSTM on one word, linear,
  log_softmax: the decoder's ``forward_steps`` on one word, what ``step`` does in training);
* the *inference step*, what ``model.step`` runs at inference in lrcn (LSTM cell by hand, word
  gates looked up in a [V, 4H] table built during the warm-up, log_softmax in place, and,
  inside the decoder's ``reusing_outputs()`` that lrcn.decoding enters, the step's [rows, V]
  output written into the same memory at every step).

The issue's comparison is our decode (batched, inference step) against the tutorial-style
reference (per image, nn.LSTM step); the two same-step rows give the search's share alone. Our
decode also runs, in the same rounds, with the inference step on *fresh outputs* (a wrapper
without ``reusing_outputs``), which gives what reusing the step's memory saves.

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
from lrcn.models.decoders import FastShowAndTell

PAD, BOS, EOS, UNK = 0, 1, 2, 3
NEG_INF = float("-inf")


def build_decoder(vocab: int, hidden: int, feature_dim: int, seed: int = 0) -> FastShowAndTell:
    torch.manual_seed(seed)
    model = FastShowAndTell(vocab, feature_dim, embed_dim=hidden, hidden_dim=hidden, dropout=0.5).eval()
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
    """Passes the step interface through, recording the number of rows of every step; without
    ``reusing_outputs``, so every step's output is fresh memory."""

    def __init__(self, model):
        self.model, self.rows = model, []

    def init_state(self, features):
        return self.model.init_state(features)

    def step(self, words, state):
        self.rows.append(words.numel())
        return self.model.step(words, state)

    def reorder(self, state, index):
        return self.model.reorder(state, index)


class KeptSteps(CountingSteps):
    """``CountingSteps`` that passes the decoder's ``reusing_outputs`` through (lrcn's default)."""

    def reusing_outputs(self):
        return self.model.reusing_outputs()


class TutorialSteps(CountingSteps):
    """The step as tutorials write it: embedding, nn.LSTM on one word, linear, log_softmax
    (the decoder's ``forward_steps`` on one word) instead of its ``inference_step``."""

    def step(self, words, state):
        self.rows.append(words.numel())
        logits, state = self.model.forward_steps(words[:, None], state)
        return F.log_softmax(logits[:, 0].float(), dim=-1), state


def projection_time(model: FastShowAndTell, rows: list[int]) -> float:
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
    steps = {"inference step": KeptSteps, "nn.LSTM step": TutorialSteps}
    ours_only = {"inference step, fresh outputs": CountingSteps}     # no reference run
    every = {**steps, **ours_only}

    def timed(fn):
        start, cpu = time.perf_counter(), time.process_time()
        out = fn()
        return time.perf_counter() - start, time.process_time() - cpu, out

    with torch.inference_mode():
        for kind in steps.values():                             # warm-up; builds the word-gate table
            beam_search(kind(model), features[:256], config, **ids)
            reference_beam_search(kind(model), features[:4], args.beam, args.n_best, args.max_len, config.min_len)
        # interleaved: our decode of all images, a slice of the reference, ours again, ... so that
        # load from other processes on this shared machine hits both alike
        ours = {name: [] for name in every}                     # (wall, CPU) of every run
        reference = {name: [0.0, 0.0, []] for name in steps}    # wall, CPU, n-best lists
        outputs, proj_times = {}, []
        for chunk in [*torch.arange(args.images).chunk(args.rounds), None]:
            for name, kind in every.items():
                counter = kind(model)
                seconds, cpu, outputs[name] = timed(lambda: beam_search(counter, features, config, **ids))
                ours[name].append((seconds, cpu))
                if kind is KeptSteps:
                    rows = counter.rows
                    proj_times.append(projection_time(model, rows))
                if chunk is not None and name in steps:
                    seconds, cpu, found = timed(lambda: reference_beam_search(
                        kind(model), features[chunk], args.beam, args.n_best, args.max_len, config.min_len))
                    reference[name][0] += seconds
                    reference[name][1] += cpu
                    reference[name][2] += found

    def pairs(nbest) -> list[tuple[list[int], float]]:
        return [(h.tokens, h.log_prob) for h in nbest]

    def differ(mine, ref) -> bool:
        """Whether two n-best lists of (tokens, log-prob) differ in a caption or a log-prob (by more than 1e-4)."""
        return ([w for w, _ in mine] != [w for w, _ in ref]
                or any(abs(a - b) > 1e-4 for (_, a), (_, b) in zip(mine, ref)))

    hyps = to_hypotheses(outputs["inference step"])
    lengths = [len(h[0].tokens) for h in hyps]
    print(f"load average before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f} "
          f"({os.cpu_count()} CPUs; other processes slow the many small ops of the reference most)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ShowAndTell H={args.hidden} "
          f"V={args.vocab}; {args.images} images, beam {args.beam}, n-best {args.n_best}, max_len {args.max_len}")
    print(f"captions: mean length {statistics.mean(lengths):.1f} words, mean log-prob "
          f"{statistics.mean(h[0].log_prob for h in hyps):.2f}; {len(rows)} steps, "
          f"{sum(rows)} row-steps (B*k*T would be {args.images * args.beam * len(rows)})")
    for name in steps:
        found = sum(differ(pairs(mine), ref) for mine, ref in zip(hyps, reference[name][2]))
        same = sum(differ(pairs(a), pairs(b)) for a, b in zip(hyps, to_hypotheses(outputs[name])))
        print(f"mismatches (captions or scores differ) of our decode against the per-image reference "
              f"with the {name}: {found} of {args.images}; against our decode with the {name}: {same}")
    for name in ours_only:
        same = sum(differ(pairs(a), pairs(b)) for a, b in zip(hyps, to_hypotheses(outputs[name])))
        print(f"mismatches of our decode against our decode with the {name}: {same} of {args.images}")
    median = {name: [statistics.median(x) for x in zip(*runs)] for name, runs in ours.items()}
    print(f"{'':16s} {'per-image reference':>22s} {'batched (ours, median of ' + str(args.rounds + 1) + ')':>32s}"
          f" {'speedup wall / CPU':>20s}")
    for name in steps:
        (ref_wall, ref_cpu, _), (wall, cpu) = reference[name], median[name]
        print(f"{name:16s} {ref_wall:12.2f} s {ref_cpu:7.1f} CPU-s {wall:20.2f} s {cpu:7.1f} CPU-s "
              f"{ref_wall / wall:11.1f}x / {ref_cpu / cpu:.1f}x")
    for name in ours_only:
        (wall, cpu), (kept_wall, kept_cpu) = median[name], median["inference step"]
        print(f"our decode with the {name}: {wall:.2f} s, {cpu:.1f} CPU-s (median); reusing outputs "
              f"takes {kept_wall / wall:.2f} of its wall time, {kept_cpu / cpu:.2f} of its CPU time")
    (ref_wall, ref_cpu, _), (wall, cpu) = reference["nn.LSTM step"], median["inference step"]
    print(f"speedup of our decode (batched, inference step) over the tutorial-style reference (per "
          f"image, nn.LSTM step): {ref_wall / wall:.1f}x wall-clock, {ref_cpu / cpu:.1f}x CPU time")
    proj = statistics.median(proj_times)
    best = min(w for w, _ in ours["inference step"])
    print(f"output projection alone at the same row counts: {proj:.2f} s (median) -> decoding runs at "
          f"{proj / median['inference step'][0]:.2f} of the projection matmul's throughput (best to best "
          f"{min(proj_times) / best:.2f})")


if __name__ == "__main__":
    main()
