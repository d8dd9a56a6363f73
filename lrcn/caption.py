"""`lrcn caption`: caption images and folders of images with a trained run, resumably (a run
trained on video captions clips instead: lrcn/video_caption.py).

With ``--out DIR`` it writes ``DIR/captions.json`` after every batch (so a re-run skips images
already captioned) and ``DIR/index.html``, a gallery that opens from disk. Files that cannot be
read are listed under ``skipped`` with the reason and never stop the run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from lrcn.data.media import ImageFolderDataset, collate_skip_bad, find_images, image_size
from lrcn.decoding import DecodeConfig
from lrcn.inference import caption_features, decode_config, load_models
from lrcn.io import write_json
from lrcn.report.gallery import write_gallery
from lrcn.run import Run, resolve_device
from lrcn.video_caption import caption_videos, is_video_config

FORMAT = "lrcn-captions-1"


def caption_paths(run_dir: str | Path, inputs: Sequence[str | Path], out_dir: str | Path | None = None,
                  json_out: str | Path | None = None, decode: DecodeConfig | None = None,
                  batch_size: int = 32, num_workers: int = 2, device: str = "auto",
                  progress: bool = True) -> dict[str, Any]:
    run = Run.open(run_dir)
    if is_video_config(run.config()):       # a video captioner: inputs are clips (lrcn/video_caption.py)
        return caption_videos(run_dir, inputs, out_dir=out_dir, json_out=json_out, decode=decode,
                              batch_size=batch_size, num_workers=num_workers, device=device, progress=progress)
    dev = resolve_device(device)
    config, vocab, encoder, decoder = load_models(run, "best", dev)
    decode = decode or decode_config(config)
    paths = find_images(inputs)
    out_json = Path(out_dir) / "captions.json" if out_dir else None
    result = {"format": FORMAT, "run": str(run.dir.resolve()), "decode": decode.to_dict(), "captions": {}, "skipped": {}}
    if out_json and out_json.exists():
        previous = json.loads(out_json.read_text(encoding="utf-8"))
        if previous.get("format") == FORMAT and previous.get("run") == result["run"] and previous.get("decode") == result["decode"]:
            result["captions"], result["skipped"] = previous["captions"], previous["skipped"]
    todo = [p for p in paths if str(p) not in result["captions"] and str(p) not in result["skipped"]]

    def save() -> None:
        if out_json:
            write_json(out_json, result)

    loader = torch.utils.data.DataLoader(ImageFolderDataset(todo, encoder.transform, max_pixels=config.data.max_pixels),
                                         batch_size=batch_size, num_workers=num_workers if todo else 0,
                                         collate_fn=collate_skip_bad)
    with tqdm(total=len(todo), desc="captioning", unit="img", disable=not progress) as bar:
        for batch in loader:
            for j, reason in batch.errors.items():
                result["skipped"][str(todo[j])] = reason
                tqdm.write(f"skipped {todo[j]}: {reason}", file=sys.stderr)
            if len(batch.indices):
                with torch.inference_mode():
                    features = encoder(batch.images.to(dev))
                hyps = caption_features(decoder, features, vocab, decode, device=dev, bf16=config.train.bf16)
                for j, nbest in zip(batch.indices, hyps):
                    path = todo[j]
                    width, height = image_size(path)
                    result["captions"][str(path)] = {
                        "caption": vocab.decode(nbest[0].tokens), "width": width, "height": height,
                        "nbest": [{"caption": vocab.decode(h.tokens), "score": h.score, "log_prob": h.log_prob}
                                  for h in nbest]}
            save()
            bar.update(len(batch.indices) + len(batch.errors))
    save()
    if out_dir:
        write_gallery(Path(out_dir) / "index.html", result)
        print(f"wrote {out_json} and {Path(out_dir) / 'index.html'} ({len(result['captions'])} captioned, "
              f"{len(result['skipped'])} skipped)")
    if json_out:
        write_json(json_out, result)
    if not out_dir and not json_out:
        for path, entry in result["captions"].items():
            print(f"{path}\t{entry['caption']}")
    for path, reason in result["skipped"].items():
        print(f"skipped {path}: {reason}", file=sys.stderr)
    return result
