"""A self-contained HTML gallery of captioned images that opens from disk.

Every caption, word, file name and reason is HTML-escaped and every image path URL-quoted, so a
caption or a file name holding markup shows as text. An entry with ``attention`` (an attention
decoder's run) also shows where the model looked for each word of its caption: a strip of the
word thumbnails of lrcn/report/attention.py, each labelled with its word.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from urllib.parse import quote

from lrcn.io import write_text

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}
h1{font-size:1.3em} .grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:14px}
figure{margin:0;background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px}
figure img{width:100%;height:180px;object-fit:contain;background:#eee}
figcaption .cap{font-weight:600;margin:.4em 0} ol{margin:.2em 0 .2em 1.2em;padding:0;font-size:.85em;color:#555}
.name{font-size:.75em;color:#888;word-break:break-all} .skipped{color:#a00;font-size:.85em}
.att{display:flex;flex-wrap:wrap;gap:3px;margin:.3em 0} .att div{display:flex;flex-direction:column;width:56px}
.att img{width:56px;height:56px;object-fit:cover} .att span{font-size:.7em;text-align:center;overflow-wrap:anywhere}
"""


def e(text: str) -> str:
    """HTML-escaped text; the undecodable bytes of a non-UTF-8 file name (lone surrogates) shown as U+FFFD."""
    return html.escape(re.sub("[\ud800-\udfff]", "\ufffd", text))


def attention_strip(entry: dict) -> str:
    """The entry's per-word attention thumbnails (paths relative to the gallery), each with its word."""
    words = "".join(f'<div><img loading="lazy" src="{e(quote(a["image"]))}" alt="{e(a["word"])}">'
                    f'<span>{e(a["word"])}</span></div>' for a in entry.get("attention", []) if "image" in a)
    return f'<div class="att" title="where the model looked for each word">{words}</div>' if words else ""


def write_gallery(path: Path, result: dict) -> None:
    """``result`` is the captions.json structure (``captions`` and ``skipped`` keyed by image path)."""
    base = path.parent.resolve()
    figures = []
    for image, entry in result["captions"].items():
        src = quote(os.fsencode(Path(os.path.relpath(Path(image).resolve(), base)).as_posix()))  # the file's bytes
        alternatives = "".join(f"<li>{e(h['caption'])} <small>({h['score']:.2f})</small></li>"
                               for h in entry.get("nbest", [])[1:])
        figures.append(
            f'<figure><img loading="lazy" src="{e(src)}" alt="{e(entry["caption"])}">'
            f'<figcaption><div class="cap">{e(entry["caption"])}</div>{attention_strip(entry)}'
            f'{f"<ol start=2>{alternatives}</ol>" if alternatives else ""}'
            f'<div class="name">{e(Path(image).name)} &middot; {entry.get("width")}&times;{entry.get("height")}</div>'
            f"</figcaption></figure>")
    skipped = "".join(f"<li>{e(p)}: {e(r)}</li>" for p, r in result["skipped"].items())
    write_text(path, f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lrcn captions</title><style>{STYLE}</style></head>
<body><h1>{len(result['captions'])} images captioned</h1>
<p class="name">run: {e(str(result.get('run', '')))}</p>
<div class="grid">{''.join(figures)}</div>
{f'<h2>Skipped ({len(result["skipped"])})</h2><ul class="skipped">{skipped}</ul>' if skipped else ''}
</body></html>
""")


VIDEO_STYLE = """
.clips{display:flex;flex-direction:column;gap:12px} .clips figure img{width:auto;max-width:100%;height:auto}
.note{color:#a60;font-size:.8em}
"""


def write_video_gallery(path: Path, result: dict) -> None:
    """``result`` is a video captions.json structure: ``captions`` keyed by clip path, each entry
    with its ``caption``, ``nbest``, ``notes`` and ``strip`` (a frame strip relative to ``path``'s folder)."""
    e = html.escape
    figures = []
    for clip, entry in result["captions"].items():
        strip = entry.get("strip")
        image = f'<img loading="lazy" src="{e(quote(strip))}" alt="{e(entry["caption"])}">' if strip else ""
        alternatives = "".join(f"<li>{e(h['caption'])} <small>({h['score']:.2f})</small></li>"
                               for h in entry.get("nbest", [])[1:])
        note = f'<div class="note">{e(entry["notes"])}</div>' if entry.get("notes") else ""
        figures.append(
            f'<figure>{image}<figcaption><div class="cap">{e(entry["caption"])}</div>'
            f'{f"<ol start=2>{alternatives}</ol>" if alternatives else ""}{note}'
            f'<div class="name">{e(Path(clip).name)}</div></figcaption></figure>')
    skipped = "".join(f"<li>{e(p)}: {e(r)}</li>" for p, r in result["skipped"].items())
    write_text(path, f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lrcn video captions</title><style>{STYLE}{VIDEO_STYLE}</style></head>
<body><h1>{len(result['captions'])} clips captioned</h1>
<p class="name">run: {e(str(result.get('run', '')))} &middot; {e(str(result.get('num_frames', '')))} frames per clip</p>
<div class="clips">{''.join(figures)}</div>
{f'<h2>Skipped ({len(result["skipped"])})</h2><ul class="skipped">{skipped}</ul>' if skipped else ''}
</body></html>
""")
