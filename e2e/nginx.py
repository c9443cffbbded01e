"""nginx's configuration for a stack: the templates beside this file, filled in."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
API_LOCATION = "~ ^/(api|admin|django-rq)(/|$)"  # what CVAT's Compose file routes to its server


def nginx_config(work: Path, servers: Sequence[tuple[int, int]], ui_dist: Path | None) -> str:
    """One server per (nginx port, CVAT server port); with a UI build, the UI on the same origin and
    only CVAT's server paths proxied."""
    ui = ""
    if ui_dist is not None:
        ui = (HERE / "nginx_ui.conf.in").read_text().replace("@UI_DIST@", str(ui_dist))
    template = (HERE / "nginx_server.conf.in").read_text()
    blocks = []
    for port, backend in servers:
        text = template.replace("@PORT@", str(port)).replace("@BACKEND_PORT@", str(backend))
        blocks.append(text.replace("@BACKEND_LOCATION@", API_LOCATION if ui else "/").replace("@UI@", ui))
    main = (HERE / "nginx.conf.in").read_text()
    # nginx's workers run as nobody when its master runs as root, and could not read the stack's files
    main = main.replace("@USER@", "user root;" if os.geteuid() == 0 else "")
    return main.replace("@SERVERS@", "\n".join(blocks)).replace("@WORK@", str(work))
