"""The one exception root of the project.

    AggregatorError            anything the project raises on purpose
    ├── ConfigError            a config file or override that cannot be used
    ├── SeedDirError           the seed directory cannot be read at all
    ├── OutputError            the output directory cannot be written
    ├── StateError             the state file cannot be opened or used
    │   └── Fenced             a newer leader holds the shared state: this instance stops writing
    ├── InUseError             another process writes the state file or output directory
    └── Interrupted            work gave way to a shutdown (not a failure)

Each error carries the file path (or key) it is about, and its message says
what is wrong in one line, so the CLI can print it as it is.
"""

from __future__ import annotations


class AggregatorError(Exception):
    """Root of every error the project raises on purpose."""


class ConfigError(AggregatorError):
    """The configuration cannot be used; the message names the key and value.

    `problems` holds every error found, one line each (the message joins them), so
    `config check` can list them all instead of the first.
    """

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems or (message,)


class SeedDirError(AggregatorError):
    """The seed directory is missing or unreadable."""


class OutputError(AggregatorError):
    """The output directory, or a file in it, cannot be written."""


class StateError(AggregatorError):
    """The state file is unusable (not SQLite, from a newer version, unwritable)."""


class Fenced(StateError):
    """A write was refused: another instance was elected leader of the shared state since
    this one was (its term is newer), so this one must not write any more."""


class InUseError(AggregatorError):
    """Another process holds the lock of the state file or output directory."""

    def __init__(
        self,
        path: object,
        pid: int | None,
        command: str = "",
        holder: str = "",
        service: bool = False,
    ) -> None:
        """`holder`: the leader instance, as it named itself (a shared state); `service`:
        `holder` names the service's instances running on it instead."""
        self.path = path
        self.pid = pid
        self.command = command
        who = f"pid {pid}" if pid is not None else "a process that is starting"
        if command:
            who += f", `aggregator {command}`"
        if holder:
            who = f"the service: {holder}" if service else f"the leader, {holder}"
        super().__init__(f"{path} is in use by another aggregator ({who})")


class Interrupted(AggregatorError):
    """A scan or render gave way to a shutdown; its open transaction was rolled back."""
