"""The link checker against a real, misbehaving HTTP server on 127.0.0.1."""

from __future__ import annotations

import gc
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from aggregator.checker import GC_YOUNG_THRESHOLD, NameNotResolved, run_checks, system_resolver
from aggregator.config import LinksConfig, config_from
from aggregator.links import Attempt, Failure, Outcome, Request, classify
from tests.conftest import running
from tests.hostile_http import HostileServer

UA = "aggregator-tests (+http://127.0.0.1/)"


@pytest.fixture
def server() -> Iterator[HostileServer]:
    with HostileServer() as running:
        yield running


def config(server: HostileServer, **overrides: Any) -> LinksConfig:
    """Fast timeouts, the server's port allowed, and loopback open unless `open_loopback=False`."""
    open_loopback = overrides.pop("open_loopback", True)
    settings: dict[str, Any] = {
        "allowed_ports": (80, 443, server.port),
        "allow_networks": ("127.0.0.0/8",) if open_loopback else (),
        "timeout": 3,
        "connect_timeout": 2,
        "host_interval": 0,
    }
    settings.update(overrides)
    return config_from({"links": settings}).links


async def resolve_test_names(host: str, port: int) -> list[str]:
    """`*.test` names of the tests; anything else through the system resolver."""
    names = {
        "intranet.test": ["10.1.2.3"],
        "loop.test": ["127.0.0.1"],
        "public.test": ["127.0.0.1"],
    }
    if host in names:
        return names[host]
    if host.endswith(".test"):
        raise NameNotResolved(f"{host} does not resolve")
    return await system_resolver(host, port)


def check(server: HostileServer, path: str, **overrides: Any) -> Attempt:
    result = run_checks(config(server, **overrides), UA, [Request(server.url(path))])
    assert len(result.attempts) == 1
    return result.attempts[0]


def test_a_live_page_is_alive_with_head_only_and_an_honest_user_agent(
    server: HostileServer,
) -> None:
    attempt = check(server, "/ok")
    assert attempt.status == 200 and classify(attempt) is Outcome.ALIVE
    assert [(m, p) for m, p, _ in server.requests] == [("HEAD", "/ok")]
    assert server.requests[0][2]["User-Agent"] == UA


def test_stored_validators_are_sent_and_304_is_alive(server: HostileServer) -> None:
    result = run_checks(config(server), UA, [Request(server.url("/ok"), etag='"v1"')])
    attempt = result.attempts[0]
    assert attempt.status == 304 and classify(attempt) is Outcome.ALIVE
    assert server.requests[0][2]["If-None-Match"] == '"v1"'


@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_redirect_chains_are_followed_hop_by_hop(server: HostileServer, code: int) -> None:
    attempt = check(server, f"/redirect/{code}/3")
    assert attempt.status == 200 and attempt.final_url == server.url("/ok")
    assert [h.status for h in attempt.hops] == [code] * 3
    assert attempt.permanent is (code in (301, 308))


def test_a_redirect_to_a_url_with_credentials_keeps_them_nowhere(server: HostileServer) -> None:
    attempt = check(server, "/moved-with-password/story")
    assert attempt.status == 200 and attempt.final_url == server.url("/ok/story")
    assert attempt.permanent and [h.url for h in attempt.hops] == [
        server.url("/moved-with-password/story")
    ]
    assert "s3cret" not in repr(attempt) and "bob" not in repr(attempt)
    followed = server.requests[-1]
    assert followed[1] == "/ok/story"
    assert "authorization" not in {k.lower() for k in followed[2]}


def test_a_run_collects_garbage_less_often_and_then_as_before(server: HostileServer) -> None:
    before = gc.get_threshold()
    during: list[tuple[int, int, int]] = []
    urls = [Request(server.url("/ok/1")), Request(server.url("/ok/2"))]
    run_checks(config(server), UA, urls, progress=lambda _: during.append(gc.get_threshold()))
    assert during and all(t[0] >= GC_YOUNG_THRESHOLD and t[1:] == before[1:] for t in during)
    assert gc.get_threshold() == before


def test_redirect_loops_and_long_chains_end(server: HostileServer) -> None:
    assert check(server, "/loop").failure is Failure.REDIRECTS
    long = check(server, "/redirect/302/15")
    assert long.failure is Failure.REDIRECTS and len(long.hops) == 11


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (404, Outcome.DEAD),
        (410, Outcome.DEAD),
        (500, Outcome.UNKNOWN),
        (401, Outcome.UNKNOWN),
        (403, Outcome.UNKNOWN),
        (999, Outcome.UNKNOWN),
    ],
)
def test_status_codes_map_to_three_outcomes(
    server: HostileServer, code: int, outcome: Outcome
) -> None:
    attempt = check(server, f"/status/{code}")
    assert attempt.status == code and classify(attempt) is outcome
    methods = [m for m, _, _ in server.requests]
    assert methods == ["HEAD", "GET"]  # HEAD inconclusive, so GET


def test_head_refused_falls_back_to_get(server: HostileServer) -> None:
    attempt = check(server, "/head-405")
    assert attempt.status == 200 and [m for m, _, _ in server.requests] == ["HEAD", "GET"]


def test_retry_after_in_both_forms_is_read_and_capped(server: HostileServer) -> None:
    seconds = check(server, "/retry-seconds")
    assert seconds.status == 429 and seconds.retry_after == 120
    date = check(server, "/retry-date")
    assert date.status == 503 and date.retry_after is not None and 80 <= date.retry_after <= 91
    assert classify(seconds) is Outcome.UNKNOWN and classify(date) is Outcome.UNKNOWN


def test_a_front_page_redirect_is_suspect(server: HostileServer) -> None:
    attempt = check(server, "/news/2024/05/a-long-article-slug-that-was-removed")
    assert attempt.status == 200 and classify(attempt) is Outcome.SUSPECT


@pytest.mark.parametrize("path", ["/silent", "/trickle"])
def test_slow_servers_end_within_the_timeout(server: HostileServer, path: str) -> None:
    started = time.monotonic()
    attempt = check(server, path)
    # The check's whole-time limit (3 s) ends it; /trickle alone would go on for a minute.
    # The margin allows for a loaded machine.
    assert time.monotonic() - started < 5.5
    assert attempt.failure is Failure.TIMEOUT and classify(attempt) is Outcome.UNKNOWN


def test_an_endless_body_is_read_only_up_to_the_bound(server: HostileServer) -> None:
    started = time.monotonic()
    attempt = check(server, "/endless", max_body_bytes=65536)
    assert attempt.status is not None and time.monotonic() - started < 3


@pytest.mark.parametrize("path", ["/reset", "/huge-headers"])
def test_broken_answers_are_unknown(server: HostileServer, path: str) -> None:
    attempt = check(server, path)
    assert attempt.failure is Failure.PROTOCOL and classify(attempt) is Outcome.UNKNOWN


def test_a_refused_connection_and_an_unresolvable_name_are_dead_candidates(
    server: HostileServer,
) -> None:
    closed = HostileServer()
    port = closed.port
    closed.server_close()
    refused = run_checks(
        config(server, allowed_ports=(port,)), UA, [Request(f"http://127.0.0.1:{port}/x")]
    ).attempts[0]
    assert refused.failure is Failure.REFUSED and classify(refused) is Outcome.DEAD
    missing = run_checks(
        config(server), UA, [Request(f"http://nowhere.test:{server.port}/")], resolve_test_names
    ).attempts[0]
    assert missing.failure is Failure.DNS and classify(missing) is Outcome.DEAD


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/ok",
        "http://localhost:{port}/ok",
        "http://loop.test:{port}/ok",
        "http://intranet.test:{port}/ok",
        "http://[::ffff:127.0.0.1]:{port}/ok",
        "http://[::1]:{port}/ok",
        "http://0.0.0.0:{port}/ok",
        "http://public.test:{port}/to-loopback",
    ],
)
def test_ssrf_the_server_receives_no_request(server: HostileServer, url: str) -> None:
    target = url.format(port=server.port)
    cfg = config(server, open_loopback=False)
    attempt = run_checks(cfg, UA, [Request(target)], resolve_test_names).attempts[0]
    assert attempt.failure is Failure.BLOCKED, attempt
    assert classify(attempt) is Outcome.BLOCKED
    assert server.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/x",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http://127.0.0.1:22/",
        "http://[::1/",
        "http://" + "a" * 70 + ".test/",
        "http://bücher.test/",
        "https://example.com/" + "p" * 10000,
    ],
)
def test_odd_and_refused_urls_end_quickly_without_requests(server: HostileServer, url: str) -> None:
    started = time.monotonic()
    attempt = run_checks(config(server), UA, [Request(url)], resolve_test_names).attempts[0]
    assert attempt.failure is not None and time.monotonic() - started < 3
    assert server.requests == []


def test_one_slow_host_does_not_hold_up_the_others(server: HostileServer) -> None:
    requests = [Request(server.url("/silent", "127.0.0.1"))] + [
        Request(server.url(f"/ok/{n}", f"127.0.0.{2 + n}")) for n in range(5)
    ]
    finished: dict[str, float] = {}
    started = time.monotonic()

    def progress(attempt: Attempt) -> None:
        finished[attempt.url] = time.monotonic() - started

    run_checks(config(server), UA, requests, progress=progress)
    fast = [t for url, t in finished.items() if "/ok/" in url]
    assert len(fast) == 5 and max(fast) < 1.5


def test_per_host_spacing_and_retry_after_pause_the_host(server: HostileServer) -> None:
    urls = [Request(server.url(f"/ok/{n}")) for n in range(3)]
    started = time.monotonic()
    run_checks(config(server, host_interval=0.5, per_host=2), UA, urls)
    assert time.monotonic() - started >= 1.0  # three starts, 0.5 s apart
    server.requests.clear()
    paused = run_checks(config(server), UA, [Request(server.url("/retry-seconds")), *urls])
    assert len(paused.deferred) + len(paused.attempts) == 4
    assert len(paused.deferred) >= 1  # left alone after asking for 120 s


@pytest.mark.parametrize("path", ["/to-emoji", "/to-bad-chars", "/odd-etag"])
def test_odd_answers_cost_one_url_not_the_run(server: HostileServer, path: str) -> None:
    urls = [Request(server.url(path)), Request(server.url("/ok/after"))]
    result = run_checks(config(server), UA, urls, resolve_test_names)
    by_url = {a.url: a for a in result.attempts}
    assert by_url[server.url("/ok/after")].status == 200
    odd = by_url[server.url(path)]
    assert odd.etag is None and odd.final_url != server.url("/new\ufffe")


def test_a_stop_keeps_the_checks_already_done(server: HostileServer) -> None:
    started = time.monotonic()
    urls = [Request(server.url(f"/ok/{n}")) for n in range(5)]
    urls.append(Request(server.url("/silent")))
    result = run_checks(
        config(server, timeout=10, per_host=6),
        UA,
        urls,
        should_stop=lambda: time.monotonic() - started > 1.5,
    )
    assert time.monotonic() - started < 4
    assert len([a for a in result.attempts if a.status == 200]) == 5


def test_a_dead_first_address_does_not_hide_a_live_one(server: HostileServer) -> None:
    async def two_addresses(host: str, port: int) -> list[str]:
        return ["127.0.0.9", "127.0.0.1"] if host == "two.test" else []

    attempt = run_checks(
        config(server), UA, [Request(f"http://two.test:{server.port}/ok")], two_addresses
    ).attempts[0]
    assert attempt.status == 200  # 127.0.0.9 refuses (nothing listens there); 127.0.0.1 answers


def test_behind_a_proxy_non_public_targets_are_still_refused(server: HostileServer) -> None:
    cfg = config(server, open_loopback=False, proxy=f"http://127.0.0.1:{server.port}")
    for url in ("http://127.0.0.1/admin", "http://169.254.169.254/latest/", "http://loop.test/"):
        attempt = run_checks(cfg, UA, [Request(url)], resolve_test_names).attempts[0]
        assert attempt.failure is Failure.BLOCKED, attempt
    assert server.requests == []  # the proxy was never asked


def methods(server: HostileServer, prefix: str) -> list[tuple[str, str]]:
    return [(m, p) for m, p, _ in server.requests if p.startswith(prefix)]


def test_a_404_is_taken_from_head_once_the_host_showed_its_head_and_get_agree(
    server: HostileServer,
) -> None:
    urls = [Request(server.url(f"/status/404/{n}")) for n in range(3)]
    result = run_checks(config(server, per_host=1), UA, urls)
    assert [a.status for a in result.attempts] == [404, 404, 404]
    assert methods(server, "/status/404") == [
        ("HEAD", "/status/404/0"),
        ("GET", "/status/404/0"),  # HEAD alone is not trusted until GET agreed once
        ("HEAD", "/status/404/1"),
        ("HEAD", "/status/404/2"),
    ]


def test_a_check_that_could_confirm_dead_always_asks_with_get(server: HostileServer) -> None:
    urls = [
        Request(server.url("/status/410/0")),
        Request(server.url("/status/410/1"), confirm=True),
    ]
    run_checks(config(server, per_host=1), UA, urls)
    assert [m for m, _ in methods(server, "/status/410")] == ["HEAD", "GET", "HEAD", "GET"]


def test_a_host_whose_head_says_gone_while_get_finds_the_page_is_asked_with_get(
    server: HostileServer,
) -> None:
    urls = [Request(server.url(f"/head-404/{n}")) for n in range(3)]
    result = run_checks(config(server, per_host=1), UA, urls)
    assert [(a.status, classify(a)) for a in result.attempts] == [(200, Outcome.ALIVE)] * 3
    assert [m for m, _ in methods(server, "/head-404")] == ["HEAD", "GET", "GET", "GET"]


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1, signed by nobody anyone trusts."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = directory / "cert.pem", directory / "key.pem"
    names = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", *names, *files],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_https_is_checked_only_with_a_certificate_the_system_trusts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path)
    server = HostileServer()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with server:
        base = f"https://127.0.0.1:{server.port}"
        untrusted = run_checks(config(server), UA, [Request(base + "/ok")]).attempts[0]
        assert untrusted.failure is Failure.TLS and classify(untrusted) is Outcome.UNKNOWN
        assert server.requests == []
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # now trusted, as a system CA
        urls = [Request(base + p) for p in ("/ok", "/status/404", "/redirect/301/2")]
        result = run_checks(config(server, per_host=1), UA, urls)
        assert [(a.status, a.failure) for a in result.attempts] == [
            (200, None),
            (404, None),
            (200, None),
        ]
        assert result.attempts[2].final_url == base + "/ok"


class Counting(BaseHTTPRequestHandler):
    """Answers 200 after a short while, counting the requests in flight at once."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *_: object) -> None:
        pass

    def do_HEAD(self) -> None:
        server: Any = self.server
        with server.lock:
            server.in_flight += 1
            server.most = max(server.most, server.in_flight)
            server.hosts.add(self.headers.get("Host", "").rsplit(":", 1)[0])
        time.sleep(0.15)
        with server.lock:
            server.in_flight -= 1
        if self.path.startswith("/busy"):
            self.send_response(429)
            self.send_header("Retry-After", "120")
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def counting() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), Counting)
    server.daemon_threads = True
    server.lock, server.in_flight, server.most, server.hosts = threading.Lock(), 0, 0, set()
    with running(server):
        yield server


SPELLINGS = ("127.0.0.1", "127.1", "2130706433", "localhost")
"""One loopback address, four ways."""


def test_every_spelling_of_one_address_shares_its_per_host_limit(counting: Any) -> None:
    port = counting.server_address[1]
    urls = [Request(f"http://{host}:{port}/{n}") for host in SPELLINGS for n in range(2)]
    cfg = LinksConfig(allowed_ports=(port,), allow_networks=("127.0.0.0/8",), per_host=1)
    result = run_checks(cfg, UA, urls)
    assert [a.status for a in result.attempts] == [200] * len(urls)
    assert counting.hosts == set(SPELLINGS)  # each spelling was asked as itself
    assert counting.most == 1


def test_a_pause_asked_under_one_spelling_holds_for_the_others(counting: Any) -> None:
    port = counting.server_address[1]
    urls = [Request(f"http://127.0.0.1:{port}/busy")]
    urls += [Request(f"http://{host}:{port}/{host}") for host in SPELLINGS[1:]]
    cfg = LinksConfig(allowed_ports=(port,), allow_networks=("127.0.0.0/8",), per_host=1)
    result = run_checks(cfg, UA, urls)
    assert [a.status for a in result.attempts] == [429]
    assert sorted(result.deferred) == sorted(u.url for u in urls[1:])
