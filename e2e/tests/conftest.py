"""One real CVAT stack for the whole session (e2e/stack.py), its users, and the official predictor run on
the frames CVAT itself serves."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from e2e.client import TrackingJob, User, create_task, register, served_frame
from e2e.processes import leftovers
from e2e.stack import Stack, StackConfig
from e2e.stack_folders import clean_stale_stacks
from tests.support.synthetic import Scene, moving_objects_scene, write_checkpoint, write_video

FRAMES = 10  # a tracking session: the start call and 9 continue calls


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """Random weights of the real model, objects kept present, masks depending on memory."""
    return write_checkpoint(tmp_path_factory.mktemp("checkpoint") / "sam2.1_hiera_tiny.pt", presence_bias=8.0)


@pytest.fixture(scope="session")
def stack(request, checkpoint):
    clean_stale_stacks()
    stack = Stack(StackConfig.from_env(checkpoint)).up()
    yield stack
    failed = request.session.testsfailed
    if failed:
        print(f"\n{failed} e2e test(s) failed; the stack's logs:\n{stack.log_tails()}")
    stack.down()
    assert leftovers(stack.work) == [], "the stack left processes behind"
    assert stack.config.keep or not stack.work.exists()


@pytest.fixture(scope="session")
def owner(stack) -> User:
    return register(stack.url, "annotator1")


@pytest.fixture(scope="session")
def stranger(stack) -> User:
    return register(stack.url, "annotator2")


@pytest.fixture(scope="session")
def scene() -> Scene:
    return moving_objects_scene(FRAMES, seed=5)


@pytest.fixture(scope="session")
def video_file(scene, tmp_path_factory) -> Path:
    return write_video(scene, tmp_path_factory.mktemp("video") / "scene.mp4")


@pytest.fixture(scope="session")
def video_job(stack, owner, video_file) -> TrackingJob:
    with owner.client(stack.url) as client:
        return create_task(client, "video", [video_file])


@pytest.fixture(scope="session")
def video_frames(stack, owner, video_job) -> list[bytes]:
    """Every frame of the video task as CVAT serves it to a function."""
    with owner.client(stack.url) as client:
        return [served_frame(client, video_job, frame) for frame in range(video_job.frames)]


class Oracle:
    """The official SAM2VideoPredictor (tests/support/oracle.py) at the function's settings, over frame
    files exactly as CVAT served them."""

    def __init__(self, checkpoint: Path, folder: Path):
        self.checkpoint = checkpoint
        self.folder = folder
        self.runs = 0

    def masks(
        self,
        frames: list[bytes],
        prompts: list,
        start: int,
        count: int,
        reverse: bool = False,
        broken: bool = False,
    ) -> list[list[np.ndarray]]:
        """Per frame in processing order, per object: the bool mask the official predictor gives; `broken`:
        with a memory that keeps 3 object pointers instead of 15 (what a fidelity check must catch)."""
        from tests.support.oracle import Prompts, Propagate

        steps = [Prompts(start, prompts), Propagate(start, count - 1, reverse)]
        return self.session(frames, steps, ["++model.max_obj_ptrs_in_encoder=4"] if broken else [])

    def session(
        self, frames: list[bytes], steps: list, overrides: list[str] | None = None
    ) -> list[list[np.ndarray]]:
        """Per frame the propagations of one official session driven by `steps` (tests/support/oracle.py's
        Prompts and Propagate) yield, per object: the bool mask."""
        from e2e.stack import TEST_FUNCTION_SETTINGS
        from tests.support.oracle import official_session

        self.runs += 1
        folder = self.folder / f"run{self.runs}"
        folder.mkdir()
        # sam2's init_state takes a folder of *.jpg files and opens each with PIL, which reads a file by
        # its content: PNG frames keep their bytes under these names
        for index, data in enumerate(frames):
            (folder / f"{index:05d}.jpg").write_bytes(data)
        logits = official_session(
            self.checkpoint,
            folder,
            steps,
            precision=TEST_FUNCTION_SETTINGS["SAM2_PRECISION"],
            overrides=[*TEST_FUNCTION_SETTINGS["SAM2_MODEL_OVERRIDES"].split(), *(overrides or [])],
        )
        shutil.rmtree(folder)
        return [
            [(frame_logits[obj, 0] > 0).numpy() for obj in range(frame_logits.shape[0])]
            for frame_logits in logits
        ]


@pytest.fixture(scope="session")
def oracle(checkpoint, tmp_path_factory) -> Oracle:
    return Oracle(checkpoint, tmp_path_factory.mktemp("oracle"))


# ---- the browser tests' (test_browser*.py) ------------------------------------------------------------


@pytest.fixture(scope="module")
def ui(stack):
    if stack.config.ui_dist is None:
        pytest.fail("the browser tests need CVAT's UI built with the plugin: run them with ./dev.sh e2e")
    return stack


@pytest.fixture(scope="module")
def long_scene() -> Scene:
    from e2e.tests.browser_support import FRAMES as BROWSER_FRAMES

    return moving_objects_scene(BROWSER_FRAMES, seed=5)


@pytest.fixture(scope="module")
def long_video(long_scene, tmp_path_factory) -> Path:
    return write_video(long_scene, tmp_path_factory.mktemp("long") / "long.mp4")
