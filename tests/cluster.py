"""Several real `aggregator run` processes on one PostgreSQL state, for the cluster tests:
`Member` (one instance, a `RunningService`), `Fleet` (the instances of one test, their
shared seed directory and database), `TcpProxy` (a connection to PostgreSQL a test can cut
and restore), and what the tests compare (output trees, feed entries)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import feedparser
import psycopg

from aggregator.output import TEMP_PREFIX
from tests.conftest import seed_text
from tests.service import RunningService, free_port

BUNDLED = Path(__file__).resolve().parent.parent / "seeds"
PUBLIC_URL = "http://feeds.example/"
"""The one public URL every instance of a test shares (they serve the leader's bytes)."""
NEVER = 60.0
"""Seconds after which a test takes it that what it waits for never happens."""
SETTINGS: dict[str, dict[str, Any]] = {
    "site": {"public_url": PUBLIC_URL},
    # No feed pushes entries out: a feed that lost one is dated by when it did, which
    # a cold build of the same seeds cannot know.
    "feeds": {"max_entries": 1000},
    "cluster": {"lease": 2, "retry": 0.3, "catch_up": 1},
    "scan": {"interval": 1, "jitter": 0},
    "links": {"enabled": False},
    "thumbnails": {"enabled": False},
}
"""What every instance of a test runs with, and the cold build it is compared with."""

T = TypeVar("T")


def until(what: str, check: Callable[[], T | None], timeout: float = NEVER) -> T:
    """Poll `check` until it returns something other than None or False; fails naming
    `what` (and the last error, if `check` raised) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            found = check()
        except (AssertionError, OSError, psycopg.Error) as exc:
            last = exc
        else:
            if found is not None and found is not False:
                return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}" + (f" (last: {last})" if last else ""))


def with_address(url: str, port: int) -> str:
    """`url` pointing at 127.0.0.1:`port` instead of its own server."""
    parts = urlsplit(url)
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))


class Member(RunningService):
    """One instance: its own output directory and port; the fleet's seeds and database."""

    def __init__(self, root: Path, seeds: Path, url: str) -> None:
        super().__init__(root, **SETTINGS, state={"url": url})
        self.seeds = seeds
        self.settings["seeds"]["dir"] = str(seeds)
        self.write_config()

    def role(self) -> str | None:
        """What /healthz says this instance is (None when it does not answer)."""
        try:
            _, body = self.health()
        except Exception:  # noqa: BLE001 - not answering, or not JSON yet
            return None
        role = body.get("role")
        return str(role) if role is not None else None

    def files(self) -> dict[str, bytes]:
        """Every file of its output directory, by relative path."""
        return tree(self.out)


class Fleet:
    """The instances of one test, on one seed directory and one database schema."""

    def __init__(self, root: Path, url: str, database: str | None = None) -> None:
        """`url`: where the tests reach the database; `database`: where the instances do
        (the same unless a proxy stands between)."""
        self.root = root
        self.url = url
        self.database = database or url
        self.seeds = root / "seeds"
        shutil.copytree(BUNDLED, self.seeds)
        self.members: list[Member] = []

    def add_member(self, start: bool = True) -> Member:
        member = Member(self.root / f"instance{len(self.members)}", self.seeds, self.database)
        self.members.append(member)
        if start:
            member.start(wait=False)
        return member

    def close(self) -> None:
        for member in self.members:
            member.__exit__()

    def live(self) -> list[Member]:
        return [m for m in self.members if m.process is not None and m.process.poll() is None]

    def add_seed(self, name: str, **fields: Any) -> str:
        """A new article in the shared seed directory; returns its title."""
        title = str(fields.pop("title", f"Article {name}"))
        slug = name.replace("/", "-")
        url = f"https://news.example/{slug}"
        (self.seeds / "new").mkdir(exist_ok=True)
        path = self.seeds / "new" / f"{slug}.md"
        text = seed_text(title=title, originalUrl=url, webUrl=url, **fields)
        path.with_suffix(".tmp").write_text(text, encoding="utf-8")
        path.with_suffix(".tmp").rename(path)  # whole, as a scan reads it
        return title

    def leader(self, among: list[Member] | None = None, timeout: float = NEVER) -> Member:
        """The one instance that says it leads, once every other says it follows."""

        def one() -> Member | None:
            members = among if among is not None else self.live()
            roles = [m.role() for m in members]
            leaders = [m for m, role in zip(members, roles, strict=True) if role == "leader"]
            if len(leaders) == 1 and all(r in ("leader", "follower") for r in roles):
                return leaders[0]
            return None

        return until("exactly one leader", one, timeout)

    def wait_synced(self, members: list[Member] | None = None) -> dict[str, bytes]:
        """Wait until every instance is healthy and has the same output files as the others;
        returns them."""
        members = members if members is not None else self.live()
        for member in members:
            member.wait_healthy(NEVER)

        differing: list[str] = []

        def same() -> dict[str, bytes] | None:
            trees = [m.files() for m in members]
            paths = set().union(*trees)
            differing[:] = sorted(p for p in paths if len({t.get(p) for t in trees}) > 1)
            return None if differing else trees[0]

        try:
            return until("the same output files on every instance", same)
        except AssertionError as exc:
            health = [m.health()[1].get("cluster") for m in members]
            raise AssertionError(f"{exc}; differing: {differing[:10]}; {health}") from None

    def wait_title(self, title: str, members: list[Member] | None = None) -> None:
        """Wait until every instance serves a feed of everything with `title` in it."""
        for member in members if members is not None else self.live():
            until(f"{title!r} served on port {member.port}", partial(serves, member, title))

    def documents(self) -> list[tuple[str, int, int]]:
        """(path, term, seq) of every row of the published documents."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            rows = conn.execute("SELECT path, term, seq FROM documents ORDER BY seq").fetchall()
        return [(str(p), int(t), int(s)) for p, t, s in rows]


def serves(member: Member, title: str) -> bool:
    """Whether `member`'s feed of everything has an entry titled `title`."""
    return title.encode() in member.get("/feeds/all.atom").content


def tree(root: Path) -> dict[str, bytes]:
    """Every file under `root`, by path relative to it, but the temp files of writes a
    `kill -9` cut short: never served (hidden), and pruned by a leader once stale."""
    if not root.exists():
        return {}
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(TEMP_PREFIX)
    }


def entry_dates(files: dict[str, bytes]) -> dict[str, str]:
    """Entry id → its `updated`, over every Atom feed among `files`."""
    dates: dict[str, str] = {}
    for path, body in files.items():
        if path.endswith(".atom"):
            for entry in feedparser.parse(body).entries:
                found = dates.setdefault(entry.id, entry.updated)
                assert found == entry.updated, (
                    f"{entry.id}: {found} in one feed, in {path} {entry.updated}"
                )
    return dates


class TcpProxy:
    """A TCP proxy on 127.0.0.1 to another address, on an event loop of its own thread.

    `cut()` closes the listener and every connection (as a lost network or a stopped
    server looks to a client: refused, reset); `restore()` listens again on the same port.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tcp-proxy", daemon=True
        )
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.restore()

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    def restore(self) -> None:
        self._server = self._call(
            asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
        )

    def cut(self) -> None:
        self._call(self._cut())

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            with contextlib.suppress(OSError):
                sock = writer.get_extra_info("socket")
                if sock is not None:  # a reset, not a polite close
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            writer.close()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()
                self._writers.discard(dst)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@contextlib.contextmanager
def fleet(root: Path, url: str, database: str | None = None) -> Iterator[Fleet]:
    """A `Fleet` whose processes are all gone when the block ends."""
    made = Fleet(root, url, database)
    try:
        yield made
    finally:
        made.close()
