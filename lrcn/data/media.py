"""Robust image loading: any common format and mode to 8-bit RGB, bad files reported not fatal.

``load_image`` opens a file by its content (not its extension), applies the EXIF orientation,
takes the first frame of animations and converts every pixel mode to RGB. Anything that cannot
be decoded raises :class:`MediaError` naming the file and the reason, so a caller looping over
ten thousand photos can report one bad file and go on. ``ImageFolderDataset`` and
``collate_skip_bad`` do exactly that inside a multi-worker ``DataLoader``::

    dataset = ImageFolderDataset(find_images("photos/"), transform)
    loader = DataLoader(dataset, batch_size=32, num_workers=4, collate_fn=collate_skip_bad)
    for batch in loader:
        for index, message in batch.errors.items():
            log.warning("skipped: %s", message)
        if batch.indices:
            features = encoder(batch.images.to(device))  # row k is dataset.paths[batch.indices[k]]
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Callable, Iterable, NamedTuple, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from lrcn.errors import MediaError

# PIL's own default limit (about 89.5 megapixels; a 268 MB RGB buffer). It admits every camera
# photo up to ~89 MP and refuses the crafted "tiny file, gigantic canvas" images that would
# exhaust memory, which matters when DataLoader workers decode several images at once.
DEFAULT_MAX_PIXELS = 89_478_485

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".dib",
                              ".gif", ".tif", ".tiff", ".avif"})

# the decoders tried, by content: photo formats only (those this Pillow lacks, e.g. AVIF before
# 11.3, are left out). Leaving out formats without a magic number (TGA, ...) keeps random bytes
# from "decoding".
DECODE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "DIB", "TIFF", "PPM", "AVIF")
_JPEG_FORMATS = ("JPEG", "MPO")  # DCT-scaled decoding (draft) available; MPO: camera JPEG, opened by "JPEG"


def _decode_formats() -> list[str]:
    Image.init()
    return [f for f in DECODE_FORMATS if f in Image.OPEN]

_EXIF_ORIENTATION = 0x0112
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)  # the orientations that rotate by 90 degrees


# ----------------------------------------------------------------------------- mode conversion

def _composite_on_white(im: Image.Image) -> Image.Image:
    """Any mode with an alpha channel (or a transparent palette / colour key) over a white page."""
    rgba = im.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _maybe_transparent(im: Image.Image) -> Image.Image:
    """L, 1, P, RGB: composite if the file declares a transparent colour, else a plain conversion."""
    if "transparency" in im.info:
        return _composite_on_white(im)
    return im if im.mode == "RGB" else im.convert("RGB")


def _gray_to_rgb(gray_u8: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(gray_u8), mode="L").convert("RGB")


def _sixteen_bit(im: Image.Image) -> Image.Image:
    """I;16* (and I, taken as 16-bit data): 0..65535 scaled to 0..255 with rounding (PIL clips)."""
    values = np.asarray(im).astype(np.int64)  # [H, W]
    values = np.clip(values, 0, 65535)
    return _gray_to_rgb(((values * 255 + 32767) // 65535).astype(np.uint8))


def _float(im: Image.Image) -> Image.Image:
    """F: values within 0..1 are taken as unit range, anything larger as 0..255 (clipped)."""
    values = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)  # [H, W]
    if values.size and values.max() <= 1.0:
        values = values * 255.0
    return _gray_to_rgb(np.clip(np.rint(values), 0, 255).astype(np.uint8))


def _cmyk(im: Image.Image) -> Image.Image:
    """CMYK through its embedded ICC profile when it has one (print profiles), else PIL's formula."""
    icc = im.info.get("icc_profile")
    if icc:
        from PIL import ImageCms   # loads littlecms: only for the rare CMYK image with a profile
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(im, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # an unusable profile: fall back to the profile-free conversion
    return im.convert("RGB")


# mode -> converter to RGB; modes not listed (YCbCr, LAB, HSV, ...) use PIL's own conversion
_TO_RGB: dict[str, Callable[[Image.Image], Image.Image]] = {
    "RGB": _maybe_transparent,
    "L": _maybe_transparent,
    "1": _maybe_transparent,
    "P": _maybe_transparent,
    "RGBA": _composite_on_white,
    "RGBa": _composite_on_white,
    "LA": _composite_on_white,
    "La": _composite_on_white,
    "PA": _composite_on_white,
    "I;16": _sixteen_bit,
    "I;16L": _sixteen_bit,
    "I;16B": _sixteen_bit,
    "I;16N": _sixteen_bit,
    "I": _sixteen_bit,
    "F": _float,
    "CMYK": _cmyk,
}


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert a decoded image of any PIL mode to 8-bit RGB."""
    return _TO_RGB.get(im.mode, lambda x: x.convert("RGB"))(im)


def _exif_orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # malformed EXIF block: the pixels are fine, the orientation is unknown
        return 1


def _apply_orientation(im: Image.Image) -> Image.Image:
    if _exif_orientation(im) == 1:
        return im
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # malformed EXIF block: keep the pixels as stored
        return im


# ----------------------------------------------------------------------------- loading

def check_file(path: Path, what: str = "image") -> None:
    """MediaError unless ``path`` is a readable, non-empty file (``what``: image or video, in the message)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MediaError(f"{what} {path} does not exist") from None
    except OSError as e:
        raise MediaError(f"{what} {path} cannot be read: {e.strerror or e}") from None
    if path.is_dir():
        raise MediaError(f"{what} {path} is a folder, not an {what} file" if what == "image"
                         else f"{what} {path} is a folder, not a {what} file")
    if st.st_size == 0:
        raise MediaError(f"{what} {path} is empty (0 bytes)")


def _check_pixels(im: Image.Image, path: Path, max_pixels: int | None) -> None:
    w, h = im.size
    if w <= 0 or h <= 0:
        raise MediaError(f"image {path} declares an empty canvas of {w}x{h} pixels")
    if max_pixels is not None and w * h > max_pixels:
        raise MediaError(
            f"image {path} declares {w}x{h} = {w * h:,} pixels, more than the limit of {max_pixels:,}; "
            f"refused as a decompression bomb or absurdly large image (raise max_pixels if you trust it)")


def load_image(path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               min_side: int | None = None) -> Image.Image:
    """Decode an image file to an 8-bit RGB ``PIL.Image`` in its displayed orientation.

    The format is detected from the content, so a PNG named ``.jpg`` loads. Animated images give
    their first frame. Transparent pixels are composited on white; 16-bit images are scaled (not
    clipped) to 8 bits. Images larger than ``max_pixels`` are refused before their pixel data is
    decoded (``None``: only PIL's global ``Image.MAX_IMAGE_PIXELS`` bomb check applies).
    ``min_side``: a JPEG may be decoded at 1/2, 1/4 or 1/8 scale (DCT scaling, much faster) as
    long as both sides stay at least ``min_side``; pass the smallest size your transform needs.
    Raises :class:`MediaError` naming the file for missing, empty, truncated, corrupt, non-image
    and oversized files.
    """
    path = Path(path)
    check_file(path)
    try:
        with warnings.catch_warnings(), open(path, "rb") as f:
            # PIL warns between MAX_IMAGE_PIXELS and twice that; our own limit decides instead.
            # (catch_warnings is process-wide: fine in DataLoader worker processes.)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(f, formats=_decode_formats())
            _check_pixels(im, path, max_pixels)
            if min_side and im.format in _JPEG_FORMATS:
                im.draft(None, (min_side, min_side))
            im.load()  # decodes the first frame; raises on truncated or corrupt data
            return to_rgb(_apply_orientation(im))
    except MediaError:
        raise
    except Image.DecompressionBombError as e:
        raise MediaError(f"image {path} is too large and refused as a possible decompression bomb: {e}") from None
    except UnidentifiedImageError:
        raise MediaError(f"image {path} is not an image in a supported format ({', '.join(_decode_formats())}; "
                         f"{path.stat().st_size:,} bytes)") from None
    except Exception as e:  # decoding untrusted bytes: any decoder failure is the file's fault
        raise MediaError(f"image {path} cannot be decoded, it is corrupt or truncated "
                         f"({type(e).__name__}: {e})") from None


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """Full-resolution (width, height) as displayed (EXIF rotation applied), reading only the header."""
    path = Path(path)
    check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=_decode_formats()) as im:
                w, h = im.size
                # a PNG's EXIF may follow the pixel data; PIL would decode everything to find it
                header_exif = im.format != "PNG" or "exif" in im.info
                if header_exif and _exif_orientation(im) in _SWAPPING_ORIENTATIONS:
                    w, h = h, w
                return w, h
    except Image.DecompressionBombError as e:
        raise MediaError(f"image {path} is too large and refused as a possible decompression bomb: {e}") from None
    except UnidentifiedImageError:
        raise MediaError(f"image {path} is not an image in a supported format ({', '.join(_decode_formats())})") from None
    except Exception as e:
        raise MediaError(f"image {path} has an unreadable header ({type(e).__name__}: {e})") from None


# ----------------------------------------------------------------------------- finding images

def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def find_images(folder_or_files: str | os.PathLike | Iterable[str | os.PathLike],
                extensions: Iterable[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files named directly or found recursively in folders, in a stable order.

    A file argument is taken as given whatever its extension (``load_image`` reads it by
    content). Folders are walked recursively (symlinked folders followed once), keeping files
    whose extension is in ``extensions`` (any case) and skipping hidden files and folders.
    Results from each argument are sorted; duplicates are dropped. A missing argument raises
    :class:`MediaError`.
    """
    if isinstance(folder_or_files, (str, os.PathLike)):
        folder_or_files = [folder_or_files]
    extensions = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    found: list[Path] = []
    seen: set[str] = set()

    def add(p: Path) -> None:
        key = os.path.abspath(p)
        if key not in seen:
            seen.add(key)
            found.append(p)

    for arg in folder_or_files:
        arg = Path(arg)
        if arg.is_file():
            add(arg)
        elif arg.is_dir():
            visited: set[str] = set()
            batch = []
            for dirpath, dirnames, filenames in os.walk(arg, followlinks=True):
                real = os.path.realpath(dirpath)
                if real in visited:  # a symlink loop or a folder linked twice
                    dirnames[:] = []
                    continue
                visited.add(real)
                dirnames[:] = [d for d in dirnames if not _is_hidden(d)]
                batch += [Path(dirpath) / n for n in filenames
                          if not _is_hidden(n) and os.path.splitext(n)[1].lower() in extensions]
            for p in sorted(batch, key=lambda p: p.relative_to(arg).parts):
                add(p)
        else:
            raise MediaError(f"{arg} does not exist; expected an image file or a folder of images")
    return found


# ----------------------------------------------------------------------------- data loading

class ImageFolderDataset(torch.utils.data.Dataset):
    """Decodes images by index for a ``DataLoader``; a bad file becomes an error row, not a crash.

    Item ``i`` is ``(i, transform(load_image(paths[i])))`` or, when the file cannot be decoded,
    ``(i, None, message)``. Use ``collate_skip_bad`` as the loader's ``collate_fn``.
    ``transform`` maps an RGB ``PIL.Image`` to a tensor (default: float [3, H, W] in 0..1). With
    ``seeds`` a random transform draws from ``torch.manual_seed(seeds[i])`` for item ``i``: the
    same item gives the same random crop in any worker, run or resumed extraction.
    """

    def __init__(self, paths: Sequence[str | os.PathLike],
                 transform: Callable[[Image.Image], torch.Tensor] | None = None, *,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, min_side: int | None = None,
                 seeds: Sequence[int] | None = None):
        if seeds is not None and len(seeds) != len(paths):
            raise ValueError("seeds and paths differ in length")
        self.paths = [Path(p) for p in paths]
        self.transform = transform if transform is not None else _to_float_tensor
        self.max_pixels = max_pixels
        self.min_side = min_side
        self.seeds = seeds

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor] | tuple[int, None, str]:
        try:
            image = load_image(self.paths[index], max_pixels=self.max_pixels, min_side=self.min_side)
        except MediaError as e:
            return index, None, str(e)
        if self.seeds is None:
            return index, self.transform(image)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seeds[index])
            return index, self.transform(image)


def _to_float_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float tensor [3, H, W] in 0..1."""
    array = np.asarray(image, dtype=np.uint8)  # [H, W, 3]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255)


class ImageBatch(NamedTuple):
    indices: list[int]              # dataset indices of the decoded images, in batch order
    images: torch.Tensor | None     # [B, ...] stacked transform outputs; None when every item failed
    errors: dict[int, str]          # dataset index -> error message, for the items dropped
    notes: dict[int, str]           # dataset index -> what was patched (always empty: images are not patched)


def collate_skip_bad(batch: Sequence[tuple]) -> ImageBatch:
    """Collate ``ImageFolderDataset`` items, dropping the ones that failed and listing them."""
    good = [item for item in batch if len(item) == 2]
    errors = {int(item[0]): str(item[2]) for item in batch if len(item) != 2}
    images = torch.utils.data.default_collate([item[1] for item in good]) if good else None
    return ImageBatch([int(item[0]) for item in good], images, errors, {})
