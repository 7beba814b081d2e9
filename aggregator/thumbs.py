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
MAX_DECODE_BYTES = 64 * 1024 * 1024
"""What decoding and shrinking one image may take, estimated from its header before decoding.

Pillow keeps a decoded pixel in 1, 2 or 4 bytes and cannot decode a PNG, GIF or
WebP at a reduced size (only JPEG, through `draft`), so this caps those at about
16 megapixels (4096x4096 RGB), and fewer with an alpha channel: a 6000x6000 PNG
would take 144 MB, and twice that in copies.
"""
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
    from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError  # only the service

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=sorted(ACCEPTED)) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise ThumbnailError(f"{image.width}x{image.height} pixels is too large")
                size = image.size
                image.draft("RGB", (width, width * 2))  # JPEG: decode at a reduced size
                cost = decode_cost(image.mode, image.format or "", image.width * image.height)
                if cost > MAX_DECODE_BYTES:
                    raise ThumbnailError(
                        f"{size[0]}x{size[1]} pixels ({image.mode}) would take "
                        f"{cost >> 20} MB to decode, over the {MAX_DECODE_BYTES >> 20} MB limit"
                    )
                image.seek(0)
                picture: Image.Image = image
                if picture.mode.startswith("I"):  # 16/32-bit grey: scale to 8 bits first
                    picture = picture.point(lambda v: v * (1 / 256)).convert("L")
                # Shrink first, then turn upright: turning copies the image, so turn the small one.
                upright = picture.getexif().get(ExifTags.Base.Orientation, 1) < 5
                picture.thumbnail((width, width * 2) if upright else (width * 2, width))
                picture = ImageOps.exif_transpose(picture)
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


def decode_cost(mode: str, image_format: str, pixels: int) -> int:
    """Bytes that decoding and shrinking an image of this mode and format takes (pure).

    Pillow holds 1 byte a pixel for 1-bit, grey and palette images, 2 for 16-bit
    grey and 4 for the rest; 16/32-bit grey is converted on a 4-byte copy,
    alpha is premultiplied on a copy before resizing, the GIF decoder keeps a
    second frame, and the WebP decoder keeps two canvases of 4 bytes a pixel
    and hands over a third before Pillow copies it (measured with Pillow 13).
    """
    if mode in ("1", "L", "P"):
        per_pixel = 1
    elif mode.startswith("I;16"):
        per_pixel = 2 + 4
    elif mode.startswith("I"):
        per_pixel = 4 + 4
    else:
        per_pixel = 4 + (4 if "A" in mode else 0)
    if image_format == "WEBP":
        per_pixel += 12
    elif image_format == "GIF":
        per_pixel += 1
    return pixels * per_pixel


def retry_delay(tries: int) -> timedelta:
    """How long to wait before trying a failed image again: 1 h, doubling, at most a week."""
    return timedelta(hours=min(2 ** max(tries - 1, 0), 168))


HEADER_BYTES = 30
"""How much of a WebP file `webp_size` needs."""


def webp_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) of the WebP image whose first `HEADER_BYTES` bytes are `head`; None
    when they are not the start of a WebP file. Pure: reads the header, decodes nothing."""
    if len(head) < HEADER_BYTES or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return None
    chunk = head[12:16]
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":  # lossy: a key frame
        width = int.from_bytes(head[26:28], "little") & 0x3FFF
        height = int.from_bytes(head[28:30], "little") & 0x3FFF
    elif chunk == b"VP8L" and head[20] == 0x2F:  # lossless: 14-bit sizes, minus one
        bits = int.from_bytes(head[21:25], "little")
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif chunk == b"VP8X":  # extended (alpha, animation): 24-bit canvas sizes, minus one
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
    else:
        return None
    return (width, height) if width and height else None
