"""contrib/: the nginx site runs in a real nginx and sends what the built-in server sends;
the systemd unit's install steps create every path the unit names.

The nginx test needs Debian's `nginx-light` (`.ci/run` installs it). Without it the test is
skipped, unless AGGREGATOR_REQUIRE_NGINX is set, as CI does: then it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from aggregator.server import StaticFiles
from tests.conftest import Site
from tests.service import free_port

ROOT = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None
)
if NGINX is None and os.environ.get("AGGREGATOR_REQUIRE_NGINX"):
    pytest.fail("AGGREGATOR_REQUIRE_NGINX is set but nginx is not installed")
needs_nginx = pytest.mark.skipif(NGINX is None, reason="needs nginx (apt-get install nginx-light)")

PUBLIC = "https://feeds.example.org/"
HUB = "https://hub.example.net/"
COMPARED = ("content-type", "cache-control", "content-security-policy", "x-content-type-options")
MIME_TYPES = Path("/etc/nginx/mime.types")


@dataclass
class Nginx:
    url: str
    warnings: str


def site_conf(port: int, root: Path) -> str:
    """contrib/nginx.conf as a user would adapt it: this port and root, our URL and hub."""
    text = (ROOT / "contrib" / "nginx.conf").read_text(encoding="utf-8")
    replacements = [
        ("listen 80;", f"listen 127.0.0.1:{port};"),
        ("listen [::]:80;\n", ""),
        ("root /srv/aggregator/public;", f"root {root};"),
        ('default "https://feeds.example.org/";', f'default "{PUBLIC}";'),
        (
            'map "" $aggregator_websub_hub { default ""; }',
            f'map "" $aggregator_websub_hub {{ default "{HUB}"; }}',
        ),
    ]
    for old, new in replacements:
        assert old in text, f"contrib/nginx.conf no longer has {old!r}"
        text = text.replace(old, new)
    return text


@pytest.fixture
def nginx(tmp_path: Path, site: Site) -> Iterator[Nginx]:
    assert NGINX is not None
    work = tmp_path / "nginx"
    work.mkdir()
    port = free_port()
    (work / "site.conf").write_text(site_conf(port, site.out), encoding="utf-8")
    mime = f"include {MIME_TYPES};" if MIME_TYPES.exists() else ""
    temp = " ".join(
        f"{kind}_temp_path {work};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # As root, nginx's workers would run as nobody, who cannot enter pytest's private temp dirs.
    user = "user root;" if os.geteuid() == 0 else ""
    (work / "nginx.conf").write_text(
        f"{user} daemon off; pid {work}/nginx.pid; error_log {work}/error.log warn;\n"
        f"events {{}}\nhttp {{ {mime} access_log off; {temp} include {work}/site.conf; }}\n",
        encoding="utf-8",
    )
    command = [NGINX, "-c", str(work / "nginx.conf"), "-p", str(work)]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    url = f"http://127.0.0.1:{port}"
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True) as process:  # closes stderr
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    httpx.get(url + "/", timeout=1)
                    break
                except httpx.TransportError:
                    assert process.poll() is None, (work / "error.log").read_text()
                    assert time.monotonic() < deadline, "nginx did not start"
                    time.sleep(0.05)
            yield Nginx(url, checked.stderr)
        finally:
            process.terminate()
            process.wait(10)


def build_site(site: Site) -> None:
    for n in range(10):
        site.add(
            f"s{n}.md",
            title=f"Story {n}",
            topics=["AI", "Space"] if n % 2 else ["AI"],
            originalUrl=f"https://a.example/{n}",
            webUrl=None,
            publishedDateTime=f"2024-01-{n + 1:02d}T12:00:00Z",
        )
    site.build(
        overrides={
            "feeds.archive": True,
            "feeds.max_entries": 3,
            "feeds.formats": ["atom", "json", "rss"],
            "output.gzip_sidecars": True,
            "site.public_url": PUBLIC,
            "websub.hub": HUB,
            "thumbnails.enabled": False,
        }
    )
    thumbs = site.out / "thumbs"
    thumbs.mkdir(exist_ok=True)
    (thumbs / "0123456789abcdef.webp").write_bytes(b"RIFF\x00\x00\x00\x00WEBPVP8 ")


@needs_nginx
def test_nginx_serves_what_the_built_in_server_serves(site: Site, nginx: Nginx) -> None:
    """Every file of a built site: same type, caching, CSP and WebSub Link header, whichever
    server answers; closed archive pages are cached for a day by both."""
    build_site(site)
    assert "[warn]" not in nginx.warnings and "[emerg]" not in nginx.warnings, nginx.warnings
    files = StaticFiles(site.out, lambda: 60, lambda: (HUB, PUBLIC))
    served = [
        p.relative_to(site.out).as_posix()
        for p in sorted(site.out.rglob("*"))
        if p.is_file() and not p.name.endswith(".gz") and not p.name.startswith(".")
    ]
    kinds = {os.path.splitext(p)[1] for p in served}
    assert {".atom", ".json", ".rss", ".opml", ".html", ".webp", ".svg", ".xsl"} <= kinds
    day = 0
    with httpx.Client(base_url=nginx.url, timeout=5) as client:
        for relative in served:
            cached = files.get("/" + relative)
            assert cached is not None, relative
            ours = {k.decode(): v.decode() for k, v in cached.plain.headers}
            response = client.get("/" + relative, headers={"accept-encoding": "identity"})
            assert response.status_code == 200, relative
            assert response.content == cached.plain.body, relative
            for name in COMPARED:
                assert response.headers.get(name) == ours.get(name), (relative, name)
            link = response.headers.get("link")
            assert (link or None) == ours.get("link"), relative
            day += ours["cache-control"].endswith("max-age=86400")
    assert day >= 1, "no closed archive page in the built site"


@needs_nginx
def test_nginx_refuses_what_the_built_in_server_refuses(site: Site, nginx: Nginx) -> None:
    build_site(site)
    (site.out / ".hidden.atom").write_text("secret", encoding="utf-8")
    outside = site.root / "outside.atom"
    outside.write_text("secret", encoding="utf-8")
    (site.out / "feeds" / "link.atom").symlink_to(outside)
    with httpx.Client(base_url=nginx.url, timeout=5) as client:
        for path in ("/.hidden.atom", "/feeds/link.atom", "/feeds/", "/nothing.atom"):
            response = client.get(path)
            assert response.status_code in (403, 404), path
            assert b"secret" not in response.content
            assert "content-security-policy" in response.headers, path
        for path in ("/feeds/ai.atom", "/index.html", "/favicon.svg", "/feed.xsl"):
            gzipped = client.get(path, headers={"accept-encoding": "gzip"})
            assert gzipped.headers.get("content-encoding") == "gzip", path  # a .gz sidecar
            assert gzipped.content == (site.out / path[1:]).read_bytes()  # httpx decodes it
        assert client.get("/metrics").status_code in (403, 502)  # local only, backend down


UNIT = ROOT / "contrib" / "aggregator.service"


def test_systemd_unit_install_steps_create_every_path_it_names() -> None:
    """The hardened unit cannot start when a path in ReadWritePaths/ReadOnlyPaths is missing,
    so the install steps in its header must create each one (and give the writable ones to
    the service user)."""
    text = UNIT.read_text(encoding="utf-8")
    steps = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    named: list[str] = []
    for key in ("ReadWritePaths", "ReadOnlyPaths"):
        for match in re.finditer(rf"^{key}=(.+)$", text, re.MULTILINE):
            named += match.group(1).split()
    assert named
    state_dirs = re.findall(r"^StateDirectory=(\S+)$", text, re.MULTILINE)
    for path in named:
        if any(path == f"/var/lib/{d}" for d in state_dirs):
            continue  # systemd creates it, owned by User=
        assert re.search(rf"install -d\b[^\n]*\s{re.escape(path)}(\s|$)", steps), path
    writable = re.search(r"^ReadWritePaths=(.+)$", text, re.MULTILINE)
    assert writable is not None
    for path in writable.group(1).split():
        if path.startswith("/var/lib/"):
            continue
        assert re.search(rf"install -d[^\n]*-o aggregator[^\n]*\s{re.escape(path)}", steps), path
