"""A fast path is switched in only where the CPU runs it; everywhere else the function falls back to the
official kernels, says so at start-up and works.

The fallbacks are proven on every machine two ways: with a `CpuSupport` that says what an AVX2-only CPU
says (the tracker built from it), and with oneDNN itself capped at AVX2 (ONEDNN_MAX_CPU_ISA=AVX2, which
makes it refuse bf16 as on an AMD EPYC Zen 3) in a process of its own: the real probe, the function's
start-up calibration and its calls through the handler.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from model_loading import resolve_precision
from speedups.cpu_support import CpuSupport, Support, instruction_sets
from speedups.fast_attention import ChunkedMultiScaleAttention, ChunkedRoPEAttention
from speedups.onednn_linear import FusedActivationMLP, OneDnnLinear, PointwiseConv2d
from tests.support import ROOT
from tests.support.cvat import continue_body, encode_image, start_body
from tests.support.models import make_tracker
from tests.support.server_process import LocalServer, post
from tests.support.synthetic import moving_objects_scene

AVX2_ONLY = CpuSupport(
    native_bf16=Support(False, "bf16 is emulated on this CPU (AVX2 only)"),
    onednn_bf16_linear=Support(False, "this CPU has no bf16 inner product (AVX2 only)"),
)
NO_ONEDNN_BF16 = CpuSupport(
    native_bf16=Support(True), onednn_bf16_linear=Support(False, "this PyTorch has no oneDNN linear")
)
ONEDNN_KINDS = {OneDnnLinear, FusedActivationMLP, PointwiseConv2d}
CHUNKED_KINDS = {ChunkedRoPEAttention, ChunkedMultiScaleAttention}
TINY = ("++model.image_size=256",)  # the emulated bf16 process: the same code path, cheaper


def kinds(tracker) -> set[type]:
    return {type(module) for module in tracker.model.modules()}


def test_auto_never_picks_bf16_where_it_is_emulated():
    assert resolve_precision("auto", torch.device("cpu"), AVX2_ONLY) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu"), AVX2_ONLY) == "bf16"


def test_explicit_bf16_without_native_bf16_runs_the_official_kernels_and_says_why(checkpoint):
    tracker = make_tracker(checkpoint, precision="bf16", fast_attention="auto", cpu=AVX2_ONLY)
    preparation = tracker.preparation
    assert (preparation.precision, preparation.fast_kernels) == ("bf16", False)
    assert not (CHUNKED_KINDS | ONEDNN_KINDS) & kinds(tracker)
    assert preparation.skipped == {
        "fast_attention": "bf16 is emulated on this CPU (AVX2 only): the official bf16 kernels run"
    }
    assert "fast_attention: skipped, bf16 is emulated on this CPU (AVX2 only)" in preparation.describe()


@pytest.mark.parametrize("cpu", [AVX2_ONLY, NO_ONEDNN_BF16], ids=["avx2-only", "no-onednn-bf16"])
def test_onednn_linear_is_skipped_where_its_kernels_do_not_run(checkpoint, cpu):
    tracker = make_tracker(checkpoint, precision="bf16", fast_attention="on", overrides=TINY, cpu=cpu)
    assert kinds(tracker) >= CHUNKED_KINDS and not ONEDNN_KINDS & kinds(tracker)
    # the neck keeps sam2's layout: nothing reads the stages channels-last
    assert tracker.model.image_encoder.trunk.stage_outputs_in_sam2_layout
    assert tracker.preparation.skipped == {"onednn_linear": cpu.onednn_bf16_linear.reason}
    assert f"onednn_linear: skipped, {cpu.onednn_bf16_linear.reason}" in tracker.preparation.describe()
    scene = moving_objects_scene(2, seed=3)
    started = tracker.start(tracker.encode(scene.frames[0]), scene.masks[0][:1])
    (stepped,) = tracker.step(tracker.encode(scene.frames[1]), [started[0].state])
    assert stepped.result.present and stepped.result.mask.shape == scene.size


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        ({"avx2", "fma"}, "AVX2 only"),
        ({"avx2", "avx512f"}, "AVX-512 without BF16"),
        ({"avx2", "avx512f", "avx512_bf16"}, "AVX512-BF16"),
        ({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, "AMX"),
    ],
)
def test_the_cpu_is_named_by_its_widest_instructions(flags, words):
    assert instruction_sets(flags) == words


CAPPED = {"ONEDNN_MAX_CPU_ISA": "AVX2"}


def capped_env() -> dict[str, str]:
    return {**os.environ, **CAPPED}


def test_the_probe_finds_that_onednn_capped_at_avx2_has_no_bf16():
    """The real probe, in a process whose oneDNN behaves as on an AVX2-only CPU."""
    script = (
        "import dataclasses, json; from speedups.cpu_support import detect; "
        "print(json.dumps(dataclasses.asdict(detect())))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=capped_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    support = json.loads(result.stdout)
    assert support["native_bf16"]["runs"] is False
    assert support["onednn_bf16_linear"] == {
        "runs": False,
        "reason": "this CPU has no bf16 inner product (oneDNN capped at AVX2 by ONEDNN_MAX_CPU_ISA)",
    }


def test_bf16_through_the_handler_where_onednn_has_no_bf16(checkpoint, tmp_path):
    """SAM2_PRECISION=bf16 on a CPU without native bf16: the function starts (its start-up
    calibration included), names what it skipped, and tracks: a start call and two continue calls."""
    scene = moving_objects_scene(3, seed=4)
    images = [encode_image(frame) for frame in scene.frames]
    log = tmp_path / "function.log"
    env = {
        **CAPPED,
        "SAM2_CHECKPOINT": str(checkpoint),
        "SAM2_DEVICE": "cpu",
        "SAM2_PRECISION": "bf16",
        "SAM2_MODEL_OVERRIDES": " ".join(TINY),
    }
    from cvat_sdk.masks import encode_mask

    with LocalServer(env, workers=1, log=log) as server:
        status, answer = post(
            server.url, start_body(images[0], [{"type": "mask", "points": encode_mask(scene.masks[0][0])}])
        )
        assert status == 200, answer
        states = answer["states"]
        for image in images[1:]:
            status, answer = post(server.url, continue_body(image, states))
            assert status == 200, answer
            states = answer["states"]
            (shape,) = answer["shapes"]
            assert shape is not None and shape["type"] == "mask" and np.asarray(shape["points"]).size > 4
    started = log.read_text()
    assert "SAM2 tracker ready" in started and "per_frame_s" in started  # calibrated at start-up
    assert "bf16, official kernels" in started
    assert "fast_attention: skipped, bf16 is emulated on this CPU (oneDNN capped at AVX2" in started


def test_the_offline_cli_tracks_in_bf16_where_onednn_has_no_bf16(checkpoint, tmp_path):
    """`python -m track_video` with SAM2_PRECISION=bf16, oneDNN capped at AVX2: it notes what it
    skipped and tracks (it used to crash on its first frame)."""
    from PIL import Image

    scene = moving_objects_scene(3, seed=6)
    frames = tmp_path / "frames"
    frames.mkdir()
    for index, frame in enumerate(scene.frames):
        Image.fromarray(frame).save(frames / f"img{index}.png")
    Image.fromarray(scene.masks[0][0].astype(np.uint8)).save(tmp_path / "object.png")
    env = {k: v for k, v in capped_env().items() if not k.startswith("SAM2_")}
    env.update(
        SAM2_CHECKPOINT=str(checkpoint),
        SAM2_DEVICE="cpu",
        SAM2_PRECISION="bf16",
        SAM2_MODEL_OVERRIDES=" ".join(TINY),
    )
    out = tmp_path / "tracks.xml"
    command = [sys.executable, "-m", "track_video", str(frames), "--start", "0", "--target", "2"]
    command += ["--mask", str(tmp_path / "object.png"), "--xml", str(out), "--quiet"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert (
        "note: fast_attention skipped, bf16 is emulated on this CPU (oneDNN capped at AVX2" in result.stderr
    )
    assert "tracked 1 object(s) over 3 frames (0 absent object-frames)" in result.stderr
    assert out.read_text().count("<mask") == 3
