"""A real CVAT on this machine without Docker, calling our function: brought up, used, taken down.

    python -m e2e.stack [--no-ui]    bring the stack up, print its addresses, keep it until Ctrl+C

What runs, each part real where it can run here (docs/real-cvat.md says why the rest are stand-ins):

- CVAT's server (Django under uvicorn, CVAT's production settings plus e2e/cvat_side/sam2_e2e_settings.py),
  twice: one process invokes functions ``direct``ly (CVAT's default on Docker), one through Nuclio's
  ``dashboard`` (its default on Kubernetes); CVAT's rq workers for the ``import`` queue (task creation)
  and the ``chunks`` queue (frames and chunks), as its supervisord configs run them;
- PostgreSQL (Debian's, a cluster of its own), redis-server for CVAT's in-memory Redis and another for
  ``cvat_redis_ondisk``, with the Kvrocks 2.7 stand-in of tests/support/kvrocks.py in front of it (a process
  of its own, e2e/kvrocks_process.py), as CVAT ships Kvrocks there; nginx in front of CVAT (``/data/``
  internal, django-sendfile), and the UI build when one is given;
- OPA's data API on OPA's Go engine over the Rego bundle CVAT serves (e2e/cvat_side/opa_server.py);
- Nuclio: e2e/nuclio_standin.py, with our function deployed from function.yaml on 2 worker processes,
  its states on the ondisk Redis (through a Kvrocks stand-in of its own, which a test can take away).

Paths come from the environment, which ./dev.sh e2e sets (`prepare_environment` does for a command on
its own): ``CVAT_SOURCE`` (a CVAT checkout, default ../shared/cvat-2.64.1), ``SAM2_E2E_CVAT_PYTHON`` (the
Python with CVAT's requirements) and optionally ``SAM2_E2E_UI_DIST`` (CVAT's UI built with our plugin).
``SAM2_E2E_KEEP=1`` keeps the stack's folder (logs, data).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from e2e.kvrocks_process import KvrocksProcess
from e2e.nginx import nginx_config
from e2e.nuclio_standin import Deployment, NuclioStandIn
from e2e.processes import Services, StackError, free_port, http_ok, port_open, wait_until
from e2e.stack_folders import alias_docker_host, clean_stale_stacks, new_stack_folder, unalias_docker_host
from tests.support import ROOT

HERE = Path(__file__).resolve().parent
DEFAULT_CVAT_SOURCE = ROOT.parent / "shared" / "cvat-2.64.1"
POSTGRES_BIN = Path("/usr/lib/postgresql")

# The function as the tests deploy it: function.yaml's settings, except a random-weight checkpoint
# (no real one can be downloaded here) and what makes the official predictor an exact oracle on a
# CPU at a test's cost: fp32, the 512 input, and no hole filling (the official predictor fills holes
# only with sam2's CUDA extension).
TEST_FUNCTION_SETTINGS = {
    "SAM2_PRECISION": "fp32",
    "SAM2_MODEL_OVERRIDES": "++model.image_size=512",
    "SAM2_FILL_HOLE_AREA": "0",
}


@dataclass(frozen=True)
class StackConfig:
    cvat_source: Path
    cvat_python: Path
    checkpoint: Path | None  # None: the stack writes a random-weight one into its folder
    ui_dist: Path | None = None
    function_workers: int = 2
    function_settings: dict[str, str] = field(default_factory=lambda: dict(TEST_FUNCTION_SETTINGS))
    function_cpus: str | None = None  # e.g. "0": the function's workers on that CPU only (taskset)
    keep: bool = False

    @classmethod
    def from_env(cls, checkpoint: Path | None = None) -> StackConfig:
        source = Path(os.environ.get("CVAT_SOURCE") or DEFAULT_CVAT_SOURCE).resolve()
        python = os.environ.get("SAM2_E2E_CVAT_PYTHON")
        if not python:
            raise StackError("SAM2_E2E_CVAT_PYTHON is not set: run the stack through ./dev.sh e2e")
        ui = os.environ.get("SAM2_E2E_UI_DIST")
        return cls(
            cvat_source=source,
            cvat_python=Path(python),
            checkpoint=checkpoint,
            ui_dist=Path(ui) if ui else None,
            keep=os.environ.get("SAM2_E2E_KEEP") == "1",
        )


@dataclass
class Ports:
    postgres: int = field(default_factory=free_port)
    redis_inmem: int = field(default_factory=free_port)
    redis_ondisk: int = field(default_factory=free_port)
    uvicorn: int = field(default_factory=free_port)
    uvicorn_dashboard: int = field(default_factory=free_port)
    nginx: int = field(default_factory=free_port)
    nginx_dashboard: int = field(default_factory=free_port)
    opa: int = field(default_factory=free_port)


class Stack:
    def __init__(self, config: StackConfig):
        self.config = config
        self.work = new_stack_folder()
        self.logs = self.work / "logs"
        self.logs.mkdir()
        self.services = Services(self.work, self.logs)
        self.ports = Ports()
        # CVAT's cvat_redis_ondisk is Kvrocks: a stand-in for CVAT, and one on the function's way to it
        self.ondisk_for_cvat: KvrocksProcess | None = None
        self.ondisk_for_function: KvrocksProcess | None = None
        self.nuclio: NuclioStandIn | None = None
        self._aliased_docker_host = False

    # ---- what the tests use ------------------------------------------------------------------

    @property
    def url(self) -> str:
        """CVAT, whose server invokes functions directly (CVAT_NUCLIO_INVOKE_METHOD=direct)."""
        return f"http://127.0.0.1:{self.ports.nginx}"

    @property
    def dashboard_url(self) -> str:
        """The same CVAT through a server process that invokes functions through Nuclio's dashboard."""
        return f"http://127.0.0.1:{self.ports.nginx_dashboard}"

    @property
    def function_store(self) -> KvrocksProcess:
        """The way from the function to its state store (the ondisk Redis): stop() takes it away."""
        assert self.ondisk_for_function is not None, "the stack is not up"
        return self.ondisk_for_function

    # ---- bringing it up -------------------------------------------------------------------------

    def up(self) -> Stack:
        began = time.monotonic()
        try:
            self._aliased_docker_host = alias_docker_host()
            self._copy_cvat()
            self._start_postgres()
            self._start_redis()
            self._deploy_function()
            self._migrate()
            self._start_cvat()
            self._wait_ready()
        except BaseException:
            self.down()
            raise
        print(
            f"CVAT stack up in {time.monotonic() - began:.0f} s at {self.url} ({self.work})", file=sys.stderr
        )
        return self

    def _copy_cvat(self) -> None:
        """CVAT writes below its own folder (data, keys, logs, static): a copy of its server code."""
        source = self.config.cvat_source
        if not (source / "manage.py").is_file():
            raise StackError(f"{source} is not a CVAT checkout (no manage.py): set CVAT_SOURCE")
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "tests")
        shutil.copytree(source / "cvat", self.work / "cvat", ignore=ignore)
        shutil.copytree(source / "utils", self.work / "utils", ignore=ignore)
        shutil.copy2(source / "manage.py", self.work / "manage.py")

    def _start_postgres(self) -> None:
        binaries = sorted(POSTGRES_BIN.glob("*/bin/postgres"))
        if not binaries:
            raise StackError("PostgreSQL's server is not installed (apt-get install postgresql)")
        bin_dir = binaries[-1].parent
        user = "postgres" if os.geteuid() == 0 else None  # initdb and postgres refuse to run as root
        data = self.work / "postgres"
        data.mkdir()
        if user:
            entry = pwd.getpwnam(user)
            os.chown(data, entry.pw_uid, entry.pw_gid)
        env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8"}
        initdb = [
            str(bin_dir / "initdb"),
            "-D",
            str(data / "data"),
            "-U",
            "root",
            "--auth=trust",
            "-E",
            "UTF8",
        ]
        self.services.run("initdb", initdb, env, cwd=data, user=user)
        self.services.start(
            "postgres",
            [
                str(bin_dir / "postgres"),
                "-D",
                str(data / "data"),
                "-p",
                str(self.ports.postgres),
                "-k",
                str(data),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ],
            env,
            cwd=data,
            user=user,
            stop_signal=signal.SIGINT,  # PostgreSQL's "fast" shutdown
        )
        wait_until("PostgreSQL", port_open(self.ports.postgres), self.services, 60)
        createdb = [
            str(bin_dir / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.ports.postgres),
            "-U",
            "root",
            "cvat",
        ]
        self.services.run("createdb", createdb, env)

    def _start_redis(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise StackError("redis-server is not installed (apt-get install redis-server)")
        for name, port in (
            ("redis-inmem", self.ports.redis_inmem),
            ("redis-ondisk", self.ports.redis_ondisk),
        ):
            folder = self.work / name
            folder.mkdir()
            args = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            self.services.start(name, [*args, "--dir", str(folder)], {"PATH": os.environ["PATH"]}, cwd=folder)
        for port in (self.ports.redis_inmem, self.ports.redis_ondisk):
            wait_until("redis-server", port_open(port), self.services, 30)
        ondisk = self.ports.redis_ondisk
        self.ondisk_for_cvat = KvrocksProcess("kvrocks-for-cvat", ondisk, self.services).start()
        self.ondisk_for_function = KvrocksProcess("kvrocks-for-the-function", ondisk, self.services).start()

    def _deploy_function(self) -> None:
        checkpoint = self.config.checkpoint
        if checkpoint is None:
            from tests.support.synthetic import write_checkpoint

            checkpoint = write_checkpoint(self.work / "sam2.1_hiera_tiny.pt", presence_bias=8.0)
        deployment = Deployment(
            function_dir=ROOT,
            function_file=ROOT / "function.yaml",
            # what deploy_cpu.sh passes (--env), pointed at the stack's ondisk Redis
            env={
                **self.function_store.env(),
                "SAM2_CHECKPOINT": str(checkpoint),
                **self.config.function_settings,
            },
            workers=self.config.function_workers,
            cpus=self.config.function_cpus,
        )
        self.nuclio = NuclioStandIn(deployment, self.services)
        self.nuclio.start_workers()

    def cvat_env(self, invoke_method: str = "direct") -> dict[str, str]:
        """The environment of CVAT's containers in its Compose files, pointed at this stack."""
        assert self.nuclio is not None and self.ondisk_for_cvat is not None
        keep = ("PATH", "LANG", "LC_ALL", "TZ")
        return {
            **{name: os.environ[name] for name in keep if name in os.environ},
            "HOME": str(self.work),
            "PYTHONPATH": str(HERE / "cvat_side"),
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": "sam2_e2e_settings",
            "SAM2_E2E_OPA_URL": f"http://127.0.0.1:{self.ports.opa}",
            "ALLOWED_HOSTS": "*",
            "CVAT_POSTGRES_HOST": "127.0.0.1",
            "CVAT_POSTGRES_PORT": str(self.ports.postgres),
            "CVAT_REDIS_INMEM_HOST": "127.0.0.1",
            "CVAT_REDIS_INMEM_PORT": str(self.ports.redis_inmem),
            "CVAT_REDIS_ONDISK_HOST": "127.0.0.1",
            "CVAT_REDIS_ONDISK_PORT": str(self.ondisk_for_cvat.port),
            "CVAT_LOG_IMPORT_ERRORS": "true",
            "CVAT_SERVERLESS": "1",
            "CVAT_NUCLIO_HOST": "127.0.0.1",
            "CVAT_NUCLIO_PORT": str(self.nuclio.dashboard_port),
            "CVAT_NUCLIO_INVOKE_METHOD": invoke_method,
        }

    def _manage(self, name: str, *args: str) -> None:
        self.services.run(name, [str(self.config.cvat_python), "manage.py", *args], self.cvat_env())

    def _migrate(self) -> None:
        """What CVAT's backend_entrypoint.sh runs before its server (init) and the server's collectstatic."""
        self._manage("migrate", "migrate", "--no-input")
        self._manage("migrateredis", "migrateredis")
        self._manage("syncperiodicjobs", "syncperiodicjobs")
        self._manage("collectstatic", "collectstatic", "--no-input")

    def _start_cvat(self) -> None:
        python = str(self.config.cvat_python)
        for name, port, method in (
            ("cvat-server", self.ports.uvicorn, "direct"),
            ("cvat-server-dashboard", self.ports.uvicorn_dashboard, "dashboard"),
        ):
            uvicorn = [python, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port)]
            self.services.start(
                name, [*uvicorn, "--forwarded-allow-ips=*", "cvat.asgi:application"], self.cvat_env(method)
            )
        self._start_nginx()
        for queue in ("import", "chunks"):
            worker = [python, "manage.py", "rqworker", "-v", "3", queue]
            self.services.start(
                f"rqworker-{queue}",
                [*worker, "--worker-class", "cvat.rqworker.DefaultWorker"],
                self.cvat_env(),
            )
        opa = [python, str(HERE / "cvat_side" / "opa_server.py"), "--port", str(self.ports.opa)]
        bundle = f"http://127.0.0.1:{self.ports.uvicorn}/api/auth/rules"
        self.services.start("opa", [*opa, "--bundle-url", bundle], self.cvat_env())

    def _start_nginx(self) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists():
            raise StackError("nginx is not installed (apt-get install nginx-light)")
        folder = self.work / "nginx"
        folder.mkdir()
        config = folder / "nginx.conf"
        servers = [
            (self.ports.nginx, self.ports.uvicorn),
            (self.ports.nginx_dashboard, self.ports.uvicorn_dashboard),
        ]
        config.write_text(nginx_config(self.work, servers, self.config.ui_dist))
        args = [nginx, "-p", str(folder), "-c", str(config), "-e", str(self.logs / "nginx_error.log")]
        self.services.start("nginx", [*args, "-g", "daemon off;"], {"PATH": os.environ["PATH"]}, cwd=folder)

    def _wait_ready(self) -> None:
        assert self.nuclio is not None
        for url in (self.url, self.dashboard_url):
            wait_until(f"CVAT at {url}", http_ok(f"{url}/api/server/about"), self.services, 300)
        wait_until("OPA", http_ok(f"http://127.0.0.1:{self.ports.opa}/health"), self.services, 120)
        self.nuclio.wait_ready()

    # ---- taking it down -------------------------------------------------------------------------

    def down(self) -> None:
        if self.nuclio is not None:
            self.nuclio.stop()
        self.services.stop_all()
        if self._aliased_docker_host:
            unalias_docker_host()
        if not self.config.keep:
            shutil.rmtree(self.work, ignore_errors=True)

    def log_tails(self, lines: int = 30) -> str:
        parts = []
        for log in sorted(self.logs.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"==> {log.name} <==\n" + "\n".join(text))
        return "\n\n".join(parts)

    def __enter__(self) -> Stack:
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()


def prepare_environment(ui: bool = True) -> None:
    """For a command run on its own, what ./dev.sh e2e sets up first: the Python with CVAT's requirements
    (e2e/setup.sh) and, with `ui`, CVAT's UI built with the plugin and the browser that drives it."""

    def last_line(*command: Path) -> str:
        done = subprocess.run(
            [str(part) for part in command], cwd=ROOT, check=True, capture_output=True, text=True
        )
        return done.stdout.strip().splitlines()[-1]

    if not os.environ.get("SAM2_E2E_CVAT_PYTHON"):
        os.environ["SAM2_E2E_CVAT_PYTHON"] = last_line(HERE / "setup.sh")
    if ui and not os.environ.get("SAM2_E2E_UI_DIST"):
        os.environ["SAM2_E2E_UI_DIST"] = last_line(ROOT / "cvat-ui-plugin" / "build-ui.sh")
        subprocess.run([str(ROOT / "cvat-ui-plugin" / "tests" / "browser" / "setup.sh")], check=True)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Bring the real-CVAT stack up until Ctrl+C.")
    parser.add_argument("--function-workers", type=int, default=2, help="the function's worker processes")
    parser.add_argument("--no-ui", action="store_true", help="without CVAT's UI (only its API)")
    args = parser.parse_args()
    prepare_environment(ui=not args.no_ui)
    # Ctrl+C or a plain kill takes the stack down (a shell starts background commands with SIGINT ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    clean_stale_stacks()
    config = replace(StackConfig.from_env(), function_workers=args.function_workers)
    with Stack(config) as stack:
        print(
            f"CVAT: {stack.url} (invokes functions directly), {stack.dashboard_url} (through the dashboard)"
        )
        print(f"logs: {stack.logs}; Ctrl+C stops it all", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                stack.services.check_alive()
                time.sleep(2)


if __name__ == "__main__":
    main()
