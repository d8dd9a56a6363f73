"""The HTML gallery of `lrcn caption --out` in a real browser (headless Chromium): captions and file
names holding markup show as text and run nothing; every image loads, also from a file name that
needs URL quoting. Skipped when Chromium is not installed (CI installs it, see .ci/run)."""

from __future__ import annotations

import html
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_overrides
from lrcn.cli import main
from lrcn.commands.demo import DEMO_CONFIG
from lrcn.report.gallery import write_gallery

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="Chromium is not installed (apt-get install chromium)")

TITLE = "lrcn captions"
# every payload would change the page title if the browser ran it
HOSTILE_WORDS = ["<script>document.title='script'</script>", "<img src=x onerror=\"document.title='img'\">",
                 "<b>bold</b>", "&amp;", "</figcaption></figure><script>document.title='close'</script>"]
HOSTILE_NAMES = ["<img src=x onerror=document.title='file'>.png",      # a file name cannot hold '/'
                 "\" onerror=\"document.title='attr'\" x=\".png",
                 "a#b?c=d%2e&e.png",                                  # must be URL-quoted to load
                 "caf\udce9.png"]                                    # not UTF-8: b"caf\xe9.png" (Latin-1)
HOSTILE_SKIPPED = "<svg onload=document.title='skipped'>.jpg"


def browser(*args: str, timeout: float = 60) -> str:
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                               "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def hostile_gallery(tiny_shapes, tmp_path_factory) -> tuple[Path, dict]:
    """`lrcn caption --out` over files with hostile names, by a run whose vocabulary is all markup."""
    tmp = tmp_path_factory.mktemp("gallery")
    run_dir = tmp / "runs" / "<i>run</i>"
    assert main(["-q", "train", str(DEMO_CONFIG), *[a for o in tiny_overrides(
        tiny_shapes, run_dir.parent, **{"train.epochs": 1, "name": run_dir.name}) for a in ("--set", o)]]) == 0
    vocab = json.loads((run_dir / "vocab.json").read_text())
    vocab["words"][4:] = [HOSTILE_WORDS[i % len(HOSTILE_WORDS)] + f" {i}" for i in range(len(vocab["words"]) - 4)]
    (run_dir / "vocab.json").write_text(json.dumps(vocab))       # a run folder from an untrusted source

    photos = tmp / "photos"
    photos.mkdir()
    images = sorted((Path(tiny_shapes).parent / "images").glob("*.png"))
    for name, src in zip(HOSTILE_NAMES + ["plain.png"], images):
        shutil.copy(src, photos / name)
    (photos / HOSTILE_SKIPPED).write_bytes(b"not an image")
    out = tmp / "out"
    assert main(["-q", "caption", str(run_dir), str(photos), "--out", str(out), "--beam", "2", "--n-best", "2"]) == 0
    result = json.loads((out / "captions.json").read_text())
    assert len(result["captions"]) == 5 and list(result["skipped"]) == [str(photos / HOSTILE_SKIPPED)]
    assert all("<" in entry["caption"] for entry in result["captions"].values())    # markup is what it shows
    return out, result


def seen_in_browser(page: Path, tmp_path: Path, images: str, report: str) -> dict:
    """What the browser made of ``page``, shown in a frame of a probe page: once the page and its images
    (the CSS selector ``images``) have loaded, the JSON of ``report``, a JavaScript object over the
    frame's document ``d`` and those images ``imgs``."""
    probe = tmp_path / "probe.html"
    probe.write_text(f"""<!doctype html><html><head><title>probe</title></head><body>
<iframe id="g" src="{page.as_uri()}" style="width:1200px;height:3000px"></iframe>
<pre id="report"></pre>
<script>
function report() {{
  const d = document.getElementById("g").contentDocument;
  const imgs = [...d.querySelectorAll("{images}")];
  if (d.readyState !== "complete" || imgs.some(i => !i.complete)) {{ setTimeout(report, 50); return; }}
  document.getElementById("report").textContent = JSON.stringify({report});
}}
window.onload = report;
</script></body></html>""")
    dom = browser("--allow-file-access-from-files", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    text = dom.split('<pre id="report">', 1)[1].split("</pre>", 1)[0]
    return json.loads(html.unescape(text))


def test_markup_in_captions_and_file_names_shows_as_text_and_never_runs(hostile_gallery, tmp_path):
    out, result = hostile_gallery
    seen = seen_in_browser(out / "index.html", tmp_path, "figure img", """{
    title: d.title, scripts: d.querySelectorAll("script").length,
    elements: [...d.body.querySelectorAll("*")].map(e => e.tagName.toLowerCase()),
    captions: [...d.querySelectorAll(".cap")].map(e => e.textContent),
    alternatives: [...d.querySelectorAll("ol li")].map(e => e.firstChild.textContent.trim()),
    names: [...d.querySelectorAll(".name")].slice(1).map(e => e.textContent.split(" \\u00b7 ")[0]),
    skipped: [...d.querySelectorAll(".skipped li")].map(e => e.textContent),
    alts: imgs.map(i => i.alt), widths: imgs.map(i => i.naturalWidth)}""")

    captions = list(result["captions"].values())
    assert seen["title"] == TITLE and seen["scripts"] == 0
    assert set(seen["elements"]) <= {"h1", "p", "div", "figure", "img", "figcaption", "ol", "li", "small", "h2", "ul"}
    assert seen["captions"] == [c["caption"] for c in captions] == seen["alts"]        # exactly the text
    assert seen["alternatives"] == [c["nbest"][1]["caption"] for c in captions]
    shown = [n.replace("\udce9", "\ufffd") for n in HOSTILE_NAMES + ["plain.png"]]   # the byte 0xE9: U+FFFD
    assert seen["names"] == [Path(p).name.replace("\udce9", "\ufffd") for p in result["captions"]]
    assert sorted(seen["names"]) == sorted(shown)
    assert seen["skipped"] == [f"{p}: {r}" for p, r in result["skipped"].items()] and HOSTILE_SKIPPED in seen["skipped"][0]
    assert seen["widths"] == [64] * 5                     # every image loaded, whatever its file name


def test_screenshot_shows_the_images_and_their_captions(hostile_gallery, tmp_path):
    out, result = hostile_gallery
    shot = tmp_path / "shot.png"
    browser("--window-size=1100,700", "--hide-scrollbars", f"--screenshot={shot}", (out / "index.html").as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)            # [H, W, 3]
    assert pixels.shape[:2] == (700, 1100)
    saturated = (pixels.max(-1) - pixels.min(-1)) > 80       # the coloured shapes; the page itself is grey
    dark = pixels.max(-1) < 90                                # text (captions are bold #222)
    assert saturated.mean() > 0.01, "no image is visible"
    assert dark.mean() > 0.002, "no text is visible"
    # four thumbnails side by side: coloured pixels in each quarter of the thumbnail row
    rows = np.flatnonzero(saturated.any(1))
    columns = saturated[rows.min(): rows.max() + 1].any(0)
    assert all(columns[k * 1100 // 4: (k + 1) * 1100 // 4].any() for k in range(4))


def test_gallery_escapes_every_field_it_writes(tmp_path):
    evil = "<script>x</script>\"'&"
    write_gallery(tmp_path / "index.html", {
        "run": evil, "skipped": {f"/p/{evil}.jpg": evil},
        "captions": {f"/p/{evil}.png": {"caption": evil, "width": 1, "height": 1,
                                        "nbest": [{"caption": evil, "score": 0.0}, {"caption": evil, "score": -1.0}]}}})
    page = (tmp_path / "index.html").read_text()
    assert "<script" not in page and evil not in page
    # run, alt, caption, alternative, skipped path, skipped reason (the file name alone is cut at its '/')
    assert page.count(html.escape(evil)) == 6 and html.escape("script>\"'&.png") in page
