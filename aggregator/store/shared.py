"""What several instances share besides the state: the storage side of aggregator.cluster.

    SharedStore      a `StateStore` that several instances can open at once (PostgreSQL)
    ├ documents      DocumentLog: every document the leader published, for followers
    ├ fence(term)    refuse this store's writes once a newer leader was elected
    ├ election()     Election: a dedicated connection that wins, holds and renews leadership
    └ notifications()  Notifications: wake a follower when documents were published

An engine that cannot be shared (SQLite, memory) does not implement this; its one
process writes alone.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Protocol, runtime_checkable

import msgspec

from aggregator.store.protocol import StateStore

NO_TERM = 0
"""The fence of a store that must not write at all (a follower's): no term is 0."""


class Stamp(msgspec.Struct, frozen=True):
    """What identifies a published document's version: its ETag and Last-Modified."""

    etag: str
    modified: int
    """Last-Modified, in whole seconds since the epoch."""


class Document(msgspec.Struct, frozen=True):
    """One change to the published documents: a document written, or withdrawn."""

    seq: int
    """Grows with every change; a follower asks for the changes after the last it applied."""
    path: str
    """Relative POSIX path in the output (`feeds/ai.atom`)."""
    body: bytes | None
    """None: the document was withdrawn (its file removed)."""
    content_type: str
    etag: str
    modified: int
    term: int
    """The term of the leader that made the change."""
    at: datetime
    """When the change was made (the database's clock)."""


class DocumentLog(Protocol):
    """The documents the leader published, in the order it published them.

    Every method raises `StateError` when the database cannot be used; writes raise
    `Fenced` when this store is fenced and a newer leader exists."""

    def publish(self, path: str, body: bytes, content_type: str, stamp: Stamp) -> None:
        """Record `body` as the document at `path` (replacing what was there)."""
        ...

    def withdraw(self, paths: Collection[str]) -> None:
        """Record that the documents at `paths` were removed (the ones not there are skipped)."""
        ...

    def index(self) -> dict[str, Stamp]:
        """The stamp of every document published and not withdrawn, by path."""
        ...

    def changes(self, after: int, limit: int) -> list[Document]:
        """The changes with a `seq` above `after`, oldest first, at most `limit`."""
        ...

    def pending(self, after: int) -> tuple[int, datetime | None]:
        """How many changes have a `seq` above `after`, and when the oldest of them was made
        (None: there are none)."""
        ...


class Election(Protocol):
    """Leadership of the shared state, held on a connection of its own: the database drops
    it when that connection dies (the process killed, the network cut) or stays silent
    for longer than the lease (the process paused).

    Every method raises `StateError` when the database cannot be reached (the
    connection is then closed: the next call opens a new one)."""

    def try_lead(self, holder: str) -> int | None:
        """Become the leader if nobody is: returns the new term (greater than every term
        before), or None when another instance leads."""
        ...

    def renew(self) -> int:
        """Show the database this leader is alive; returns the current term (another
        instance's when it took over since)."""
        ...

    def leader(self) -> tuple[int, str]:
        """The current term and the name of the instance that won it ("" for none)."""
        ...

    def services(self) -> list[str]:
        """The names of the service instances (`aggregator run`) connected to the shared
        state besides this one, leaders and followers alike (sorted)."""
        ...

    def close(self) -> None:
        """Give up leadership (if held) and close the connection."""
        ...


class Notifications(Protocol):
    """A follower's subscription to new documents (its own connection)."""

    def wait(self, timeout: float) -> bool:
        """Block until documents were published (True) or `timeout` seconds passed (False).

        Raises `StateError` when the connection is lost (the next call reconnects)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class SharedStore(StateStore, Protocol):
    """A state store several instances can share (see the module's docstring)."""

    @property
    def documents(self) -> DocumentLog: ...

    def fence(self, term: int | None) -> None:
        """Refuse every write transaction unless the leader's term is `term` (0: refuse them
        all, a follower's store; None: no check, a one-off command that leads alone)."""
        ...

    def election(self, lease: float, name: str = "", service: bool = True) -> Election:
        """A new `Election` whose leadership lapses `lease` seconds after the holder's last
        sign of life, for the instance `name` (`service`: an `aggregator run`, which other
        instances' `services()` see; False: a one-off command)."""
        ...

    def notifications(self) -> Notifications:
        """A new `Notifications` subscription."""
        ...
