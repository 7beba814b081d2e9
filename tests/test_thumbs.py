"""Thumbnails: article images fetched from a real server on 127.0.0.1, shrunk, served locally."""

from __future__ import annotations

import contextlib
import io
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageOps

from aggregator.app import make_app
from aggregator.thumbs import ThumbnailError, make_thumbnail
from tests.apps import fetch_thumbnails
from tests.conftest import NOW, Site, running, seed_text
from tests.pagecheck import check_page
from tests.service import RunningService


def png(width: int, height: int, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), "red" if mode == "RGB" else 1).save(out, "PNG")
    return out.getvalue()


BIG = png(1200, 800)
IMAGES = {
    "/photo.png": (BIG, "image/png"),
    "/logo.svg": (b'<svg xmlns="http://www.w3.org/2000/svg"><script>x</script></svg>', "image/svg"),
    "/not-an-image.png": (b"<html>hello</html>", "image/png"),
}


class Images(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        body, kind = IMAGES.get(self.path, (b"", ""))
        if not body:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@contextlib.contextmanager
def image_server() -> Iterator[ThreadingHTTPServer]:
    """The test images (`Images`) served on 127.0.0.1; each request's path is noted in
    the server's `hits`."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Images)
    server.hits = []  # type: ignore[attr-defined]
    with running(server):
        yield server


@pytest.fixture
def images() -> Iterator[ThreadingHTTPServer]:
    with image_server() as server:
        yield server


def test_a_thumbnail_is_a_small_webp() -> None:
    data = make_thumbnail(BIG, 320)
    with Image.open(io.BytesIO(data)) as thumb:
        assert thumb.format == "WEBP" and thumb.size == (320, 213)
    assert len(data) < len(BIG)


@pytest.mark.parametrize(
    "data",
    [
        IMAGES["/logo.svg"][0],
        b"GIF89a" + b"\x00" * 20,
        b"",
        png(8000, 6000, "1"),  # 48 megapixels: refused before decoding
    ],
)
def test_what_is_not_a_plain_image_gives_no_thumbnail(data: bytes) -> None:
    with pytest.raises(ThumbnailError):
        make_thumbnail(data, 320)


def test_pages_show_local_thumbnails_and_never_the_remote_image(
    site: Site, images: ThreadingHTTPServer
) -> None:
    port = images.server_address[1]
    for name in ("photo.png", "logo.svg", "not-an-image.png", "missing.png"):
        site.add(
            f"{name}.md",
            title=name,
            topics=["Pictures"],
            originalUrl=f"https://n.example/{name}",
            images=[{"url": f"http://127.0.0.1:{port}/{name}"}],
        )
    settings = {
        "links.allow_networks": ("127.0.0.0/8",),
        "links.allowed_ports": (port,),
        "links.host_interval": 0,
    }
    config = site.config(**settings)
    site.build()
    page = check_page((site.out / "topics" / "pictures.html").read_bytes())
    assert page.fetched() == []  # nothing local yet, so no image at all

    report = fetch_thumbnails(config, NOW)
    assert report.made == 1
    assert {url.rsplit("/", 1)[1] for url, _ in report.failed} == {
        "logo.svg",
        "not-an-image.png",
        "missing.png",
    }
    page = check_page((site.out / "topics" / "pictures.html").read_bytes())
    (src,) = page.fetched()
    assert src.startswith("../thumbs/") and src.endswith(".webp")
    assert (site.out / "topics" / src).resolve().is_file()
    assert check_page((site.out / "topics" / "all.html").read_bytes()).fetched() == [src]

    hits = len(images.hits)  # type: ignore[attr-defined]
    again = fetch_thumbnails(config, NOW + timedelta(minutes=5))
    assert again.made == 0 and again.failed == []  # failures wait before another try
    assert len(images.hits) == hits  # type: ignore[attr-defined]
    later = fetch_thumbnails(config, NOW + timedelta(hours=2))
    assert len(later.failed) == 3

    (site.seeds / "photo.png.md").unlink()  # the article goes, and its thumbnail with it
    site.build(now=NOW + timedelta(hours=3))
    assert not list((site.out / "thumbs").glob("*.webp"))


def test_images_on_the_servers_own_network_are_not_fetched(
    site: Site, images: ThreadingHTTPServer
) -> None:
    port = images.server_address[1]
    site.add("a.md", topics=["Pictures"], images=[{"url": f"http://127.0.0.1:{port}/photo.png"}])
    site.build()
    report = fetch_thumbnails(site.config(**{"links.allowed_ports": (port,)}), NOW)
    assert report.made == 0 and len(report.failed) == 1
    assert images.hits == []  # type: ignore[attr-defined]


def test_the_service_fetches_thumbnails_and_serves_them(
    tmp_path: Path, images: ThreadingHTTPServer
) -> None:
    port = images.server_address[1]
    with RunningService(
        tmp_path,
        links={"enabled": False, "allow_networks": ["127.0.0.0/8"], "allowed_ports": [port]},
        thumbnails={"interval": 1},
    ) as svc:
        (svc.seeds / "a.md").write_text(
            seed_text(topics=["Pictures"], images=[{"url": f"http://127.0.0.1:{port}/photo.png"}])
        )
        svc.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            page = check_page(svc.get("/topics/pictures.html").content)
            if page.fetched():
                break
            time.sleep(0.2)
        (src,) = page.fetched()
        image = svc.get("/topics/" + src)
        assert image.status_code == 200 and image.headers["content-type"] == "image/webp"
        assert "img-src 'self'" in image.headers["content-security-policy"]
        with Image.open(io.BytesIO(image.content)) as thumb:
            assert thumb.width == 320


def big_png(path: Path, width: int, height: int) -> Path:
    """An RGB PNG of any size, written a row at a time (the test itself never holds it)."""
    row = b"\x00" + bytes(range(256)) * (width * 3 // 256) + b"\x80" * (width * 3 % 256)
    pack = zlib.compressobj(1)
    data = b"".join([pack.compress(row) for _ in range(height)] + [pack.flush()])

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )
    return path


PEAK = """
import resource, sys
from pathlib import Path
from aggregator.thumbs import ThumbnailError, make_thumbnail
try:
    outcome = f"made {len(make_thumbnail(Path(sys.argv[1]).read_bytes(), 320))} bytes"
except ThumbnailError as exc:
    outcome = f"refused: {exc}"
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, outcome)
"""


def thumbnail_in_a_process(path: Path) -> tuple[int, str]:
    """Thumbnail one image file in a fresh process: its peak RSS in MB, and the outcome."""
    done = subprocess.run(
        [sys.executable, "-c", PEAK, str(path)], capture_output=True, text=True, check=True
    )
    peak, outcome = done.stdout.strip().split(" ", 1)
    return int(peak), outcome


def test_one_image_takes_at_most_about_100_mb_to_decode(tmp_path: Path) -> None:
    baseline, outcome = thumbnail_in_a_process(big_png(tmp_path / "small.png", 100, 100))
    assert outcome.startswith("made")
    huge, outcome = thumbnail_in_a_process(big_png(tmp_path / "huge.png", 6000, 6000))
    assert outcome.startswith("refused") and "MB" in outcome  # it would take 137 MB and copies
    assert huge - baseline < 100
    large, outcome = thumbnail_in_a_process(big_png(tmp_path / "large.png", 4000, 4000))
    assert outcome.startswith("made")  # the largest PNGs that are taken stay within the bound
    assert large - baseline < 100
    Image.new("RGB", (2048, 2040), "teal").save(tmp_path / "large.webp", "WEBP")
    webp, outcome = thumbnail_in_a_process(tmp_path / "large.webp")
    assert outcome.startswith("made")
    assert webp - baseline < 100


def dark_corners(image: Image.Image) -> list[bool]:
    w, h = image.size
    grey = image.convert("L")
    points = ((2, 2), (w - 3, 2), (2, h - 3), (w - 3, h - 3))
    return [grey.getpixel(p) < 128 for p in points]  # type: ignore[operator]


@pytest.mark.parametrize("orientation, size", [(1, (320, 213)), (6, (320, 480)), (8, (320, 480))])
def test_a_turned_photo_comes_out_upright_and_width_bound(
    orientation: int, size: tuple[int, int]
) -> None:
    picture = Image.new("RGB", (600, 400), "white")
    picture.paste("black", (0, 0, 300, 200))  # one quarter, which turning moves
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    out = io.BytesIO()
    picture.save(out, "JPEG", exif=exif.tobytes())
    with Image.open(io.BytesIO(out.getvalue())) as original:
        upright = ImageOps.exif_transpose(original)
    with Image.open(io.BytesIO(make_thumbnail(out.getvalue(), 320))) as thumb:
        assert thumb.size == size
        assert dark_corners(thumb) == dark_corners(upright)
        assert dark_corners(thumb).count(True) == 1


def test_sixteen_bit_grey_keeps_its_shade() -> None:
    out = io.BytesIO()
    Image.new("I;16", (400, 200), 40000).save(out, "PNG")
    with Image.open(io.BytesIO(make_thumbnail(out.getvalue(), 320))) as thumb:
        assert thumb.getpixel((5, 5)) == (156, 156, 156)  # 40000 / 256, not white


def test_a_deleted_thumbnail_is_noticed_and_fetched_again(
    site: Site, images: ThreadingHTTPServer
) -> None:
    port = images.server_address[1]
    site.add("a.md", topics=["Pictures"], images=[{"url": f"http://127.0.0.1:{port}/photo.png"}])
    config = site.config(
        **{"links.allow_networks": ("127.0.0.0/8",), "links.allowed_ports": (port,)}
    )
    site.build()
    assert fetch_thumbnails(config, NOW).made == 1
    (thumb,) = (site.out / "thumbs").glob("*.webp")
    with make_app(config) as app:
        app.rescan(NOW)
        assert app.output_intact()
        thumb.unlink()
        assert not app.output_intact()
    assert fetch_thumbnails(config, NOW + timedelta(minutes=1)).made == 1
    assert thumb.is_file()


def test_a_new_width_makes_new_thumbnails(site: Site, images: ThreadingHTTPServer) -> None:
    port = images.server_address[1]
    site.add("a.md", topics=["Pictures"], images=[{"url": f"http://127.0.0.1:{port}/photo.png"}])
    allow = {"links.allow_networks": ("127.0.0.0/8",), "links.allowed_ports": (port,)}
    site.build()
    assert fetch_thumbnails(site.config(**allow), NOW).made == 1
    wider = site.config(**allow, **{"thumbnails.width": 480})
    assert fetch_thumbnails(wider, NOW).made == 1
    (thumb,) = (site.out / "thumbs").glob("*.webp")  # the narrow one is gone
    with Image.open(thumb) as image:
        assert image.width == 480


def test_a_host_that_asks_to_wait_is_left_alone(site: Site) -> None:
    from tests.hostile_http import HostileServer

    with HostileServer() as server:
        for n in range(3):
            site.add(
                f"w{n}.md",
                topics=["Pictures"],
                originalUrl=f"https://n.example/{n}",
                images=[{"url": server.url(f"/retry-seconds/{n}.png")}],
            )
        config = site.config(
            **{
                "links.allow_networks": ("127.0.0.0/8",),
                "links.allowed_ports": (server.port,),
                "links.per_host": 1,
            }
        )
        site.build()
        first = fetch_thumbnails(config, NOW)
        assert first.made == 0 and len(server.requests) == 1  # the rest were deferred
        fetch_thumbnails(config, NOW + timedelta(minutes=5))
        assert len(server.requests) == 1  # nobody asked again before the pause is over
