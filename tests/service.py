"""A real `aggregator run` on temp dirs and a free port, for tests: in a subprocess
(`RunningService`), or in this process (`InProcessService`) where a process of its own
proves nothing more."""

from __future__ import annotations

import logging
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml


def _ephemeral_ports() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A port free now, for a server a test starts next.

    Taken below the kernel's ephemeral range: a port from that range can be taken in
    between by the local end of any client connection (the abuse tests open thousands),
    and the server would then fail to bind.
    """
    low, _ = _ephemeral_ports()
    for _ in range(200):
        port = random.randrange(max(1024, low - 12000), low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        found: int = sock.getsockname()[1]
        return found


class RunningService:
    """Start, query, signal and stop one service process."""

    def __init__(self, root: Path, **settings: Any) -> None:
        self.root = root
        self.seeds = root / "seeds"
        self.out = root / "public"
        self.state = root / "state" / "aggregator.sqlite3"
        self.config_path = root / "aggregator.yaml"
        self.log_path = root / "service.log"
        self.port = free_port()
        self.seeds.mkdir(parents=True, exist_ok=True)
        self.settings: dict[str, dict[str, Any]] = {
            "seeds": {"dir": str(self.seeds)},
            "output": {"dir": str(self.out)},
            "state": {"path": str(self.state)},
            "site": {"public_url": f"http://127.0.0.1:{self.port}/"},
            "scan": {"interval": 1, "jitter": 0},
            "server": {"port": self.port},
            "build": {"workers": 1},
        }
        for section, values in settings.items():
            self.settings.setdefault(section, {}).update(values)
        self.write_config()
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RunningService:
        return self

    def __exit__(self, *_: object) -> None:
        """Whatever happened in the test, no service process outlives it."""
        if self.process is not None and self.process.poll() is None:
            self.kill()

    def write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.settings))

    def new_port(self) -> None:
        """Listen on another free port from the next start on (the feeds' public URL stays).

        A port free at the first start may be taken by any process on the machine while
        the service is down; a restart on it would then fail to listen."""
        self.port = free_port()
        self.settings["server"]["port"] = self.port
        self.write_config()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True, open_files: int | None = None) -> RunningService:
        """Start the service; `open_files` sets its soft and hard RLIMIT_NOFILE, so it
        cannot raise the limit itself."""

        def limit() -> None:
            if open_files is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

        with self.log_path.open("ab") as log:  # the service writes its own copy
            self.process = subprocess.Popen(
                [sys.executable, "-m", "aggregator", "run", "--config", str(self.config_path)],
                cwd=self.root,
                stdout=log,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                preexec_fn=limit if open_files is not None else None,
            )
        if wait:
            self.wait_healthy()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, **headers: str) -> httpx.Response:
        return httpx.get(self.base + path, headers=headers, timeout=5)

    def wait_healthy(self, timeout: float = 20) -> dict[str, Any]:
        return self.wait_for(lambda h: h.get("status") == "ok", timeout)

    def health(self) -> tuple[int, dict[str, Any]]:
        response = self.get("/healthz")
        body: dict[str, Any] = response.json()
        return response.status_code, body

    def check_running(self) -> None:
        """Fail (AssertionError, with the log) when the service has stopped."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"service exited {self.process.returncode}:\n{self.log()}")

    def wait_for(self, check: Any, timeout: float = 20) -> dict[str, Any]:
        """Poll /healthz until `check(body)` holds."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            self.check_running()
            try:
                _, last = self.health()
                if check(last):
                    return last
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"timed out; last health {last}\n{self.log()}")

    def wait_next_scan(self, timeout: float = 20) -> dict[str, Any]:
        """Wait until a scan that started after this call has finished."""
        _, now = self.health()
        target = now["scans"] + 2  # the one running now may have started before the call
        return self.wait_for(lambda h: h["scans"] >= target, timeout)

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self, timeout: float = 10) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)


class _Lines(logging.Handler):
    """Keeps the text of every record, as the service's log file would have it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname.lower()} {record.getMessage()}")


class InProcessService(RunningService):
    """A `Service` run in this process, on the same temp dirs and config file.

    `run(drive)` runs the service's event loop in the calling (main) thread, as signal
    handlers need, and `drive(self)` on a thread of its own once /healthz says ok; the
    service is stopped when `drive` returns (or fails, which `run` raises again).
    `signal` sends the signal to this process: the service's handlers take it.
    """

    def __init__(self, root: Path, **settings: Any) -> None:
        super().__init__(root, **settings)
        self._handler = _Lines()
        self._finished = threading.Event()

    def run(self, drive: Callable[[InProcessService], None], timeout: float = 60) -> int:
        """Serve until `drive` returns; returns `Service.run`'s exit status."""
        from aggregator.config import load_config
        from aggregator.daemon import Service

        logger, root = logging.getLogger("aggregator"), logging.getLogger()
        saved = (logger.level, list(root.handlers), root.level)
        logger.setLevel(logging.INFO)
        logger.addHandler(self._handler)
        failures: list[BaseException] = []
        service = Service(load_config(self.config_path), lambda: load_config(self.config_path))
        self.service = service

        def driver() -> None:
            try:
                self.wait_healthy()
                drive(self)
            except BaseException as exc:  # noqa: BLE001 - raised again in the test's thread
                failures.append(exc)
            finally:
                service.request_stop()

        thread = threading.Thread(target=driver, name="test-driver", daemon=True)
        thread.start()
        try:
            code = service.run()
        finally:
            self._finished.set()
            logger.removeHandler(self._handler)
            logger.setLevel(saved[0])
            for handler in list(root.handlers):  # a reload configures the root logger
                root.removeHandler(handler)
            for handler in saved[1]:
                root.addHandler(handler)
            root.setLevel(saved[2])
        thread.join(timeout)
        if failures:
            raise failures[0]
        return code

    def log(self) -> str:
        return "\n".join(self._handler.lines)

    def wait_next_scan(self, timeout: float = 20) -> dict[str, Any]:
        """Run one scan now, as the rescan job does (no waiting for the interval); returns
        the health after it."""
        self.service._rescan_job()
        _, health = self.health()
        return health

    def signal(self, sig: signal.Signals) -> None:
        assert not self._finished.is_set(), "the service has stopped"
        os.kill(os.getpid(), sig)

    def check_running(self) -> None:
        if self._finished.is_set():
            raise AssertionError(f"the service stopped:\n{self.log()}")
