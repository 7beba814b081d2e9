"""Thumbnails: small local copies of article images, so pages ask no other host.

Pure apart from decoding (Pillow stays inside this module): image bytes in,
the bytes of a small WebP out, or `ThumbnailError` saying why not. Only
raster formats browsers show are taken (no SVG, which can carry scripts);
re-encoding drops whatever else the file carried (metadata, trailing data).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from datetime import timedelta

FOLDER = "thumbs"
SUFFIX = ".webp"
ACCEPTED = frozenset({"JPEG", "PNG", "GIF", "WEBP"})
MAX_PIXELS = 40_000_000
"""Larger images are refused before they are decoded (a decompression bomb guard)."""
QUALITY = 75


class ThumbnailError(Exception):
    """The bytes are not an image we make a thumbnail of."""


def thumbnail_path(image_url: str, width: int) -> str:
    """Where the thumbnail of an image lives, relative to the output directory (the width
    is in the name, so a new `thumbnails.width` makes new files)."""
    digest = hashlib.blake2b(image_url.encode("utf-8"), digest_size=12).hexdigest()
    return f"{FOLDER}/{digest}-{width}{SUFFIX}"


def make_thumbnail(data: bytes, width: int) -> bytes:
    """A WebP at most `width` pixels wide (and twice that high) of the image in `data`."""
    from PIL import Image, ImageOps, UnidentifiedImageError  # only the service needs Pillow

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=sorted(ACCEPTED)) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise ThumbnailError(f"{image.width}x{image.height} pixels is too large")
                image.draft("RGB", (width, width * 2))  # JPEG: decode at a reduced size
                image.seek(0)
                picture = ImageOps.exif_transpose(image)
                if picture.mode.startswith("I"):  # 16/32-bit grey: scale to 8 bits first
                    picture = picture.point(lambda v: v * (1 / 256)).convert("L")
                picture.thumbnail((width, width * 2))
                mode = (
                    "RGBA" if "A" in picture.getbands() or "transparency" in image.info else "RGB"
                )
                out = io.BytesIO()
                picture.convert(mode).save(out, "WEBP", quality=QUALITY, method=4)
    except ThumbnailError:
        raise
    except UnidentifiedImageError:
        raise ThumbnailError("not a JPEG, PNG, GIF or WebP image") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ThumbnailError("too many pixels") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ThumbnailError(f"cannot decode the image ({exc})"[:200]) from None
    return out.getvalue()


def retry_delay(tries: int) -> timedelta:
    """How long to wait before trying a failed image again: 1 h, doubling, at most a week."""
    return timedelta(hours=min(2 ** max(tries - 1, 0), 168))
