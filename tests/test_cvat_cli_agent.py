"""The agent function as cvat-cli really loads and runs it.

A fresh interpreter, started in the repository root like the README's commands, parses the README's
`cvat-cli function run-agent` and `create-native` arguments with cvat-cli's own parser, loads the
function with its `FunctionLoader` (`--function-file` or `--function-module`, `-p name=type:value`
parameters) and runs the tracking worker jobs in cvat-cli's own worker process pool, as `run-agent`
does: the function is loaded in a spawned worker, images and shapes are pickled to it and the shapes
back. The masks must equal the Nuclio handler's (`expected`).

`--function-file` runs under `python -I`, so the project is not on `sys.path` (the `cvat-cli` console
script puts only its own folder there); `--function-module` runs under `python -c`, which puts the
current folder there as `python -m cvat_cli` does. Only the CVAT server is replaced: create-native's
POST goes to a stand-in client that records it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT
from tests.support.cvat import FUNCTION_SETTINGS, function_env
from tests.support.models import fastest_precision

if sys.version_info < (3, 11):
    pytest.skip("cvat-cli (requirements-dev.txt) needs Python 3.11+", allow_module_level=True)

# The server the README's commands name; nothing is sent to it.
SERVER = ["--server-host", "https://app.cvat.ai"]

AGENT_SESSION = r'''
import argparse
import importlib.util
import json
import logging
import sys
import types
from pathlib import Path

import attrs
import PIL.Image
from cvat_cli._internal.agent import (
    RecoverableExecutor,
    _default_tracking_state_id_generator,
    _worker_init,
    _worker_job_get_function_spec,
)
from cvat_cli._internal.agent_driver_tracking import _worker_job_init_tracking, _worker_job_track
from cvat_cli._internal.commands_all import COMMANDS
from cvat_cli._internal.common import FunctionLoader, configure_common_arguments
from cvat_sdk.auto_annotation import TrackableShape
from cvat_sdk.core.auth import ClientAuthParameters


def parse(argv):
    """The arguments as `cvat-cli` parses them."""
    parser = argparse.ArgumentParser()
    configure_common_arguments(parser)
    COMMANDS.configure_parser(parser)
    return parser.parse_args(argv)


def run_agent_jobs(argv, image_paths, shapes):
    """What `run-agent` does with the function: load it in a spawned worker (cvat-cli's
    `_worker_init`, which also runs the tracking driver's `init_worker`), then one init_tracking job
    on the first image and one track job per following image."""
    args = parse(argv)
    loader = FunctionLoader(args.function_module, args.function_file, args.function_parameters)
    task_id = 7
    with RecoverableExecutor(initializer=_worker_init,
                             initargs=[loader, _default_tracking_state_id_generator]) as executor:
        def job(fn, *job_args):
            return executor.result(executor.submit(fn, *job_args))

        spec = job(_worker_job_get_function_spec)
        shapes = [TrackableShape(type=s["type"], points=s["points"]) for s in shapes]
        state_ids = job(_worker_job_init_tracking, task_id, PIL.Image.open(image_paths[0]), shapes)
        tracked = [[attrs.asdict(s) if s else None
                    for s in job(_worker_job_track, task_id, PIL.Image.open(path), state_ids)]
                   for path in image_paths[1:]]
    return {"spec": type(spec).__name__, "shape_types": sorted(spec.supported_shape_types),
            "states": len(state_ids), "tracked": tracked}


def create_native(argv):
    """`create-native` through cvat-cli's executor, its POST recorded by a stand-in client."""
    args = parse(argv)
    executor = vars(args).pop("_executor")
    for name in ["_needs_client", "loglevel"] + [f.name for f in attrs.fields(ClientAuthParameters)]:
        vars(args).pop(name)
    posted = []

    def call_api(path, method, body=None, **kwargs):
        posted.append({"path": path, "method": method, "body": body})
        return None, types.SimpleNamespace(data=json.dumps({"id": 1, **body}).encode())

    client = types.SimpleNamespace(api_client=types.SimpleNamespace(call_api=call_api),
                                   logger=logging.getLogger("cvat-cli"))
    executor(client, **vars(args))
    return posted


if __name__ == "__main__":
    request = json.loads(Path(sys.argv[1]).read_text())
    project_importable = [importlib.util.find_spec(name) is not None for name in ("config", "model_handler")]
    result = {"project_importable": project_importable,
              "run_agent": run_agent_jobs(request["run_agent"], request["images"], request["shapes"]),
              # after the worker jobs: this process loads the function itself only now
              "create_native": create_native(request["create_native"])}
    Path(request["out"]).write_text(json.dumps(result))
'''


def agent_session(
    tmp_path: Path,
    checkpoint: Path,
    images: list[bytes],
    start_shapes: list[dict],
    function: list[str],
    frames: int,
    isolated: bool,
) -> dict:
    """Run AGENT_SESSION in a fresh interpreter in the repository root; its result."""
    paths = []
    for index, data in enumerate(images[:frames]):
        paths.append(tmp_path / f"frame{index}.jpg")
        paths[-1].write_bytes(data)
    parameters = [
        "-p",
        f"checkpoint=str:{checkpoint}",
        "-p",
        "device=str:cpu",
        "-p",
        f"precision=str:{fastest_precision()}",
    ]
    request = {
        "run_agent": [*SERVER, "function", "run-agent", "1", *function, *parameters],
        "create_native": [*SERVER, "function", "create-native", "SAM2 tracker", *function, *parameters],
        "images": [str(p) for p in paths],
        "shapes": start_shapes,
        "out": str(tmp_path / "result.json"),
    }
    (tmp_path / "request.json").write_text(json.dumps(request))
    # No PYTHONPATH and none of the function's settings but the model size, which has no parameter.
    env = {
        name: value
        for name, value in os.environ.items()
        if name != "PYTHONPATH" and not name.startswith(FUNCTION_SETTINGS)
    }
    env["SAM2_MODEL_OVERRIDES"] = function_env(checkpoint)["SAM2_MODEL_OVERRIDES"]
    flags = ["-I"] if isolated else []
    completed = subprocess.run(
        [sys.executable, *flags, "-c", AGENT_SESSION, str(tmp_path / "request.json")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads((tmp_path / "result.json").read_text())


def check(result: dict, expected: list, tracked_frames: int) -> None:
    agent = result["run_agent"]
    assert agent["spec"] == "TrackingFunctionSpec"
    assert agent["shape_types"] == ["mask", "polygon", "rectangle"]
    assert agent["states"] == 2
    assert len(agent["tracked"]) == tracked_frames
    for answers, (mask, polygon) in zip(agent["tracked"], expected, strict=False):
        assert [a["type"] for a in answers] == ["mask", "polygon"]
        assert [a["points"] for a in answers] == [mask, polygon]
    (post,) = result["create_native"]
    assert (post["path"], post["method"]) == ("/api/functions", "POST")
    assert post["body"] == {
        "provider": "native",
        "name": "SAM2 tracker",
        "visibility": "private",
        "kind": "tracker",
        "supported_shape_types": ["mask", "polygon", "rectangle"],
    }


@pytest.mark.parametrize(
    "selector, frames, isolated",
    [
        # the README's `--function-file cvat_sdk_function.py`, with the project off sys.path
        (["--function-file", "cvat_sdk_function.py"], 5, True),
        # `python -m cvat_cli ... --function-module cvat_sdk_function` from the repository root
        (["--function-module", "cvat_sdk_function"], 3, False),
    ],
    ids=["function-file", "function-module"],
)
def test_cvat_cli_runs_the_function_and_tracks_as_the_nuclio_handler(
    tmp_path, checkpoint, images, start_shapes, expected, selector, frames, isolated
):
    """The tracked frames equal the Nuclio handler's answers."""
    result = agent_session(
        tmp_path, checkpoint, images, start_shapes, selector, frames=frames, isolated=isolated
    )
    assert result["project_importable"] == [not isolated, not isolated]
    check(result, expected, tracked_frames=frames - 1)
