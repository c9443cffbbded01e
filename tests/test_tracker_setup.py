"""Configuration, model loading errors, preprocessing and hole filling."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections import deque
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from config import ConfigError, TrackerConfig
from frame_pixels import fill_holes, preprocess
from model_handler import Sam2Tracker
from model_loading import resolve_precision
from process_settings import available_cpus, cgroup_cpu_quota, claim_process
from tests.support import ROOT


def test_environment_is_parsed_once_into_a_config(tmp_path):
    cfg = TrackerConfig.from_env(
        {
            "SAM2_CONFIG": "configs/sam2.1/sam2.1_hiera_s.yaml",
            "SAM2_CHECKPOINT": str(tmp_path / "x.pt"),
            "SAM2_DEVICE": "CPU",
            "SAM2_PRECISION": "fp32",
            "SAM2_FILL_HOLE_AREA": "0",
        }
    )
    assert cfg == TrackerConfig(
        sam2_config="configs/sam2.1/sam2.1_hiera_s.yaml",
        checkpoint=tmp_path / "x.pt",
        device="cpu",
        precision="fp32",
        fill_hole_area=0,
    )
    default = TrackerConfig.from_env({})
    assert default.checkpoint.name == "sam2.1_hiera_tiny.pt"
    assert (default.device, default.precision, default.fill_hole_area) == ("auto", "auto", 8)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"SAM2_PRECISION": "fp16"}, "SAM2_PRECISION='fp16' is not one of auto, fp32, bf16"),
        ({"SAM2_DEVICE": "tpu"}, "SAM2_DEVICE='tpu'"),
        ({"SAM2_FILL_HOLE_AREA": "lots"}, "SAM2_FILL_HOLE_AREA='lots' is not an integer"),
        ({"SAM2_FILL_HOLE_AREA": "-1"}, "at least 0"),
    ],
)
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        TrackerConfig.from_env(env)


def test_missing_checkpoint_says_which_variable_and_where_to_get_it(tmp_path):
    cfg = TrackerConfig(checkpoint=tmp_path / "sam2.1_hiera_tiny.pt", device="cpu")
    with pytest.raises(ConfigError) as error:
        Sam2Tracker.from_config(cfg)
    assert "SAM2_CHECKPOINT" in str(error.value)
    assert "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_tiny.pt" in str(error.value)


def test_unknown_config_names_the_variable(checkpoint):
    cfg = TrackerConfig(sam2_config="configs/nope.yaml", checkpoint=checkpoint, device="cpu")
    with pytest.raises(ConfigError, match=r"SAM2_CONFIG='configs/nope\.yaml' is not a sam2 config"):
        Sam2Tracker.from_config(cfg)


def test_checkpoint_of_another_model_is_refused(checkpoint):
    cfg = TrackerConfig(sam2_config="configs/sam2.1/sam2.1_hiera_s.yaml", checkpoint=checkpoint, device="cpu")
    with pytest.raises(ConfigError, match="does not fit SAM2_CONFIG"):
        Sam2Tracker.from_config(cfg)


def test_auto_precision():
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cpu")) in ("fp32", "bf16")


def test_preprocess_equals_sam2_video_loader(tmp_path):
    from sam2.utils.misc import load_video_frames

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "00000.jpg", quality=90)
    theirs, height, width = load_video_frames(str(tmp_path), 128, offload_video_to_cpu=True)
    ours = preprocess(Image.open(tmp_path / "00000.jpg"), 128)
    assert (height, width) == (48, 64)
    assert torch.equal(ours[0], theirs[0])


def _reference_fill(logits: np.ndarray, max_area: int) -> np.ndarray:
    """Plain flood fill over 8-connected background components."""
    background = logits <= 0
    seen = np.zeros_like(background)
    out = logits.copy()
    h, w = logits.shape
    for y in range(h):
        for x in range(w):
            if not background[y, x] or seen[y, x]:
                continue
            component, queue = [], deque([(y, x)])
            seen[y, x] = True
            while queue:
                cy, cx = queue.popleft()
                component.append((cy, cx))
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        ny, nx = cy + dy, cx + dx
                        if 0 <= ny < h and 0 <= nx < w and background[ny, nx] and not seen[ny, nx]:
                            seen[ny, nx] = True
                            queue.append((ny, nx))
            if len(component) <= max_area:
                for cy, cx in component:
                    out[cy, cx] = np.float32(0.1)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fill_holes_matches_a_flood_fill(seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.8, 1.0, size=(2, 1, 40, 40)).astype(np.float32)
    filled = fill_holes(torch.from_numpy(logits), 8).numpy()
    for index in range(2):
        expected = _reference_fill(logits[index, 0], 8)
        np.testing.assert_array_equal(filled[index, 0], expected)
    assert (filled != logits).any()
    assert torch.equal(fill_holes(torch.from_numpy(logits), 0), torch.from_numpy(logits))


@pytest.mark.parametrize(
    "files, quota",
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),  # cgroup v2, docker --cpus=1.5
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3.0),  # cgroup v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
)
def test_cgroup_cpu_limits_are_read(tmp_path, files, quota):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpu_quota(tmp_path) == quota
    cpus = available_cpus(tmp_path)
    assert 1 <= cpus <= len(os.sched_getaffinity(0))
    if quota is not None:
        assert cpus <= max(1, int(quota))


def test_cpu_threads_follow_the_setting(tmp_path):
    before = torch.get_num_threads()
    checkpoint = str(tmp_path / "unused.pt")
    try:
        settings = claim_process(
            TrackerConfig.from_env({"SAM2_CHECKPOINT": checkpoint, "SAM2_CPU_THREADS": "1"})
        )
        assert torch.get_num_threads() == 1
        assert settings.device == torch.device("cpu") and settings.cpu_threads == 1
        assert "1 CPU threads" in settings.describe()
        settings = claim_process(
            TrackerConfig.from_env({"SAM2_CHECKPOINT": checkpoint})
        )  # the cores we may use
        assert torch.get_num_threads() == available_cpus() == settings.cpu_threads
    finally:
        torch.set_num_threads(before)


FRESH_TENSOR_FAULTS = """
import json, resource, sys, torch
from process_settings import keep_large_blocks_in_heap
if sys.argv[1] == "keep":
    assert keep_large_blocks_in_heap()
def resident_mb():
    return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize() // 2**20
def page_faults_of_a_fresh_100mb_tensor():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(25_000_000)  # written, then freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
rounds = [(page_faults_of_a_fresh_100mb_tensor(), resident_mb()) for _ in range(30)]
print(json.dumps(rounds))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc malloc setting")
def test_large_tensors_reuse_the_heap_instead_of_fresh_pages():
    """Once warm, freed 100 MB come back without the kernel handing out (and zeroing) 24,414 new
    pages each time."""

    def rounds(mode: str) -> list[tuple[int, int]]:
        run = subprocess.run(
            [sys.executable, "-c", FRESH_TENSOR_FAULTS, mode],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(run.stdout)

    kept = rounds("keep")
    # glibc settles on reusing freed blocks after a few rounds; from then on the heap stays the same
    assert sum(faults for faults, _ in kept[-10:]) < 1_000
    assert kept[-10][1] == kept[-1][1]
    huge_pages = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not huge_pages.exists() or "[always]" not in huge_pages.read_text():
        assert all(faults > 20_000 for faults, _ in rounds("default")[-10:])
