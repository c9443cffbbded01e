"""Where stacks live on this machine: each in a folder of the temporary directory that names the process
owning it, so that a later run can tell a killed run's leftovers from a stack in use and clean them up;
and the one machine-wide change a stack may make, the Docker host name in /etc/hosts."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from pathlib import Path

from e2e.processes import StackError, stop_leftovers

WORK_PREFIX = "sam2-cvat-e2e-"
OWNER = "owner"  # in a stack's folder: the process that brought it up (see process_identity)
DOCKER_HOST = "host.docker.internal"
HOSTS = Path("/etc/hosts")
HOSTS_LINE = f"127.0.0.1 {DOCKER_HOST}  # added by the sam2-cvat e2e stack\n"


def process_identity(pid: int) -> str:
    """A process's id and start time: a reused id is another process."""
    try:
        return f"{pid} {Path(f'/proc/{pid}/stat').read_text().rsplit(') ', 1)[1].split()[19]}"
    except (OSError, IndexError):
        return f"{pid} gone"


def new_stack_folder() -> Path:
    """A folder for a stack, owned by this process; readable by the users nginx and PostgreSQL run as."""
    folder = Path(tempfile.mkdtemp(prefix=WORK_PREFIX))
    folder.chmod(0o755)
    (folder / OWNER).write_text(process_identity(os.getpid()))
    return folder


def stack_folders() -> dict[Path, bool]:
    """The stacks' folders, each with whether the run that made it is alive (a killed run leaves its
    folder, and maybe some of its processes)."""
    found = {}
    for folder in sorted(Path(tempfile.gettempdir()).glob(f"{WORK_PREFIX}*")):
        try:
            owner = (folder / OWNER).read_text()
        except OSError:
            owner = ""
        found[folder] = bool(owner) and process_identity(int(owner.split()[0])) == owner
    return found


def clean_stale_stacks() -> None:
    """End what is left of stacks whose runs were killed and remove their folders; when no stack is
    left, also the host name a stack mapped in /etc/hosts."""
    folders = stack_folders()
    for folder, alive in folders.items():
        if not alive:
            stop_leftovers(folder)
            shutil.rmtree(folder, ignore_errors=True)
    if not any(folders.values()):
        unalias_docker_host()


def alias_docker_host() -> bool:
    """CVAT's `direct` invocation posts to host.docker.internal instead of localhost when it finds
    /.dockerenv (it assumes it runs in a container beside Nuclio's, and CVAT's serverless Compose file
    maps that name to the Docker host). Where the stack itself runs in a container, the name is mapped
    to this machine the same way. True when this call added the mapping."""
    if not Path("/.dockerenv").exists():
        return False
    with contextlib.suppress(OSError):
        socket.getaddrinfo(DOCKER_HOST, None)
        return False
    if os.geteuid() != 0:
        raise StackError(
            f"/.dockerenv exists, so CVAT invokes functions at {DOCKER_HOST}: map it to 127.0.0.1 in "
            f"{HOSTS}, or run as root"
        )
    with open(HOSTS, "a") as hosts:
        hosts.write(HOSTS_LINE)
    return True


def unalias_docker_host() -> None:
    with contextlib.suppress(OSError):
        lines = HOSTS.read_text().splitlines(True)
        if HOSTS_LINE in lines:
            HOSTS.write_text("".join(line for line in lines if line != HOSTS_LINE))
