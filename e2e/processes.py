"""The stack's processes: started so that none outlives the stack, stopped with everything they started.

Every service runs in its own process group, with its working directory inside the stack's folder, and
gets SIGTERM from the kernel if the process that started it dies (Linux's parent-death signal), so a
killed test run does not leave a CVAT behind. Stopping a service signals its whole group. What still
runs with its working directory under the stack's folder afterwards (a child that left the group, such
as an rq work-horse) is a leftover: `leftovers` finds those, `stop_leftovers` ends them, and the tests
check that none is left.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    # runs in the child between fork and exec, after Popen's user switch: a credential change would
    # clear the setting
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Service:
    name: str
    process: subprocess.Popen
    log: Path
    stop_signal: int = signal.SIGTERM

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 20) -> None:
        """Signal the group, wait, then kill what is left of it."""
        group = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, self.stop_signal)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)


@dataclass
class Services:
    """The services of one stack, stopped in the reverse order of their start."""

    root: Path
    logs: Path
    started: list[Service] = field(default_factory=list)

    def start(
        self,
        name: str,
        args: Sequence[str],
        env: dict[str, str],
        cwd: Path | None = None,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> Service:
        log = self.logs / f"{name}.log"
        with open(log, "ab") as output:
            process = subprocess.Popen(
                list(args),
                cwd=cwd or self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=user,
                group=user,
                extra_groups=[] if user else None,
                preexec_fn=_die_with_parent,
            )
        service = Service(name, process, log, stop_signal)
        self.started.append(service)
        return service

    def run(self, name: str, args: Sequence[str], env: dict[str, str], cwd: Path | None = None, **kw) -> None:
        """A one-off command (a migration, createdb), logged; when it fails, raise with its log's tail."""
        service = self.start(name, args, env, cwd, **kw)
        self.started.remove(service)
        if service.process.wait() != 0:
            raise StackError(f"{name} failed (exit {service.process.returncode}):\n{service.log_tail()}")

    def stop(self, service: Service) -> None:
        """Stop one service before the others (a test taking it away)."""
        service.stop()
        self.started.remove(service)

    def stop_all(self) -> None:
        for service in reversed(self.started):
            service.stop()
        self.started.clear()
        stop_leftovers(self.root)

    def check_alive(self) -> None:
        for service in self.started:
            if not service.alive():
                raise StackError(
                    f"{service.name} exited with {service.process.returncode}:\n{service.log_tail()}"
                )


class StackError(RuntimeError):
    pass


def leftovers(root: Path) -> list[int]:
    """Processes whose working directory is `root` or inside it (the stack's own ones)."""
    root = root.resolve()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd == root or root in cwd.parents:
            found.append(int(entry.name))
    return found


def stop_leftovers(root: Path, timeout: float = 10) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = leftovers(root)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
            time.sleep(0.1)
        if not pids:
            return


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def wait_until(what: str, ready: Callable[[], bool], services: Services, timeout: float) -> None:
    """Poll `ready` until it holds; fail early, with the log's tail, if a service died meanwhile."""
    deadline = time.monotonic() + timeout
    while not ready():
        services.check_alive()
        if time.monotonic() > deadline:
            raise StackError(f"{what} not ready after {timeout:.0f} s")
        time.sleep(0.2)


def http_ok(url: str) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status < 500
        except urllib.error.HTTPError as error:
            return error.code < 500
        except OSError:
            return False

    return ready


def port_open(port: int) -> Callable[[], bool]:
    def ready() -> bool:
        with socket.socket() as sock:
            sock.settimeout(1)
            return sock.connect_ex(("127.0.0.1", port)) == 0

    return ready
