"""contrib/: the nginx site runs in a real nginx and sends what the built-in server sends;
the systemd unit's install steps create every path the unit names; the Compose file runs two
instances on one database behind contrib/nginx-cluster.conf (tests/test_cluster_nginx.py runs
that in a real nginx).

The nginx test needs Debian's `nginx-light` (`.ci/run` installs it). Without it the test is
skipped, unless AGGREGATOR_REQUIRE_NGINX is set, as CI does: then it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from aggregator.config import load_config
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


COMPOSE = ROOT / "contrib" / "compose.yaml"
CLUSTER_CONF = ROOT / "contrib" / "nginx-cluster.conf"
INSTANCES = ("aggregator-1", "aggregator-2")


def compose_file() -> dict[str, Any]:
    """contrib/compose.yaml as Compose reads it, `${VAR:-default}` taken as the default."""
    text = COMPOSE.read_text(encoding="utf-8")
    assert not re.search(r"\$\{[^}:]*\}", text), "a variable without a default"
    text = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text)
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def test_compose_runs_two_instances_on_one_database_behind_nginx() -> None:
    """The instances share the database URL, the public URL (nginx's address) and the seeds
    (read only), each has its own output and port, waits for a healthy PostgreSQL and is
    health-checked; nginx balances between exactly these services, on the port they serve."""
    compose = compose_file()
    services = compose["services"]
    assert set(services) == {"postgres", "nginx", *INSTANCES}

    postgres = services["postgres"]
    assert postgres["image"] == "postgres:15"
    assert "pg_isready" in postgres["healthcheck"]["test"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])

    instances = [services[name] for name in INSTANCES]
    environments = [s["environment"] for s in instances]
    assert environments[0] == environments[1]
    env = {k: str(v) for k, v in environments[0].items()}
    # The settings exist and are valid, as the image's own environment would give them.
    config = load_config(None, environ=env)
    assert config.state.shared
    database = urlsplit(env["AGGREGATOR_STATE__URL"])
    assert database.hostname == "postgres" and database.port == 5432
    assert database.username == postgres["environment"]["POSTGRES_USER"]
    assert database.password == postgres["environment"]["POSTGRES_PASSWORD"]
    assert database.path == "/" + postgres["environment"]["POSTGRES_DB"]

    nginx = services["nginx"]
    (published,) = nginx["ports"]
    host_port, container_port = published.split(":")
    assert container_port == "80"
    public = urlsplit(config.site.public_url)
    assert (public.hostname, public.port) == ("localhost", int(host_port))

    outputs, ports, seeds = set(), set(), set()
    for name, service in zip(INSTANCES, instances, strict=True):
        assert Path(COMPOSE.parent, service["build"]["context"]).resolve() == ROOT
        assert (ROOT / service["build"]["dockerfile"]).is_file()
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy", name
        assert service["healthcheck"]["test"] == ["CMD", "aggregator", "healthcheck"], name
        assert service["hostname"] == name
        mounts = {v.split(":")[1]: v for v in service["volumes"]}
        assert set(mounts) == {"/srv/seeds", "/srv/public"}, name
        assert mounts["/srv/seeds"].endswith(":ro"), name
        assert (COMPOSE.parent / mounts["/srv/seeds"].split(":")[0]).resolve() == ROOT / "seeds"
        seeds.add(mounts["/srv/seeds"])
        outputs.add(mounts["/srv/public"].split(":")[0])
        (port,) = service["ports"]
        assert port.endswith(":8080"), name  # the image's server.port
        ports.add(port.split(":")[0])
    assert len(seeds) == 1 and len(outputs) == 2 and len(ports) == 2
    assert outputs <= set(compose["volumes"])
    assert host_port not in ports

    assert "./nginx-cluster.conf:/etc/nginx/conf.d/default.conf:ro" in nginx["volumes"]
    assert set(nginx["depends_on"]) == set(INSTANCES)
    conf = CLUSTER_CONF.read_text(encoding="utf-8")
    block = re.search(r"^upstream (\S+) \{(.*?)^\}", conf, re.MULTILINE | re.DOTALL)
    assert block is not None
    upstreams = re.findall(r"^\s*server\s+([^\s;]+)", block.group(2), re.MULTILINE)
    assert sorted(upstreams) == [f"{name}:8080" for name in INSTANCES]
    passes = re.findall(r"proxy_pass (\S+);", conf)
    assert passes and set(passes) == {f"http://{block.group(1)}"}
    assert re.search(r"^\s*listen 80;", conf, re.MULTILINE)
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "AGGREGATOR_SERVER__PORT=8080" in dockerfile


DOCKER = shutil.which("docker")


def _has_compose() -> bool:
    if DOCKER is None:
        return False
    found = subprocess.run([DOCKER, "compose", "version"], capture_output=True, check=False)
    return found.returncode == 0


@pytest.mark.skipif(not _has_compose(), reason="needs docker compose")
def test_docker_compose_accepts_the_compose_file() -> None:
    assert DOCKER is not None
    checked = subprocess.run(
        [DOCKER, "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


def test_the_package_the_dockerfile_installs_holds_every_module(tmp_path: Path) -> None:
    """The image runs `pip install .`: a wheel, not the source tree; every module of the
    source (the store's subpackages too) must be in it."""
    source_tree = tmp_path / "source"  # a clean copy: a build/ folder left here is reused
    shutil.copytree(
        ROOT,
        source_tree,
        ignore=shutil.ignore_patterns(
            ".*", "build", "dist", "*.egg-info", "__pycache__", "state", "public"
        ),
    )
    wheel_command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path)]
    built = subprocess.run(
        [*wheel_command, str(source_tree)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if built.returncode and "Could not" in built.stderr + built.stdout:
        pytest.skip(f"cannot build a wheel here (no package index?): {built.stderr[-200:]}")
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("aggregator-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packaged = {name for name in archive.namelist() if name.endswith(".py")}
    source = {str(p.relative_to(ROOT)) for p in (ROOT / "aggregator").rglob("*.py")}
    assert source - packaged == set()
