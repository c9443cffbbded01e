"""The GPU benchmark (bench/gpu_bench.py) run with --smoke, as bench/device_check.sh runs it on a lent GPU
but on the CPU with tiny sizes, so that it cannot break unnoticed between lent GPUs: its output folder
holds every measurement of issue 21, complete and well-formed (not their speed). And bench/gpu_report.py
rendering that folder into copies of README.md and docs/performance.md."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from itertools import product
from pathlib import Path

import pytest
import torch

from bench.gpu.sizes import SMOKE
from bench.gpu_report import END, ROW_MARK, START, ReportError, replace_block, replace_rows
from tests.support import ROOT
from tests.support.cvat import FUNCTION_SETTINGS

MEASUREMENTS = ("1-versus-official", "2-concurrency", "3-memory", "4-cold-start", "5-variants")
STAGES = {"decode", "load", "encode", "track", "store", "shapes"}
VARIANTS = {
    "opencv_decode",
    "batch_objects",
    "masks_upsampled_on_device",
    "cuda_graph_encoder",
    "torch_compile",
}


def run_module(module: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(FUNCTION_SETTINGS)}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**env, "TQDM_DISABLE": "1"},
    )


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gpu-bench") / "out"
    result = run_module("bench.gpu_bench", "--smoke", "--out", str(out))
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return out


def measurement(folder: Path, name: str) -> dict:
    return json.loads((folder / f"{name}.json").read_text())


def test_the_smoke_writes_every_measurement_complete(smoke):
    names = {path.name for path in smoke.iterdir()}
    assert names == {"0-run.json", "log.txt", *(f"{name}.json" for name in MEASUREMENTS)}
    assert len(names) <= 8  # what the device tool brings back from its output folder
    run = json.loads((smoke / "0-run.json").read_text())
    assert run["mode"] == "smoke" and run["device"] == "CPU" and run["torch"] == torch.__version__
    assert run["command"].startswith("python -m bench.gpu_bench --smoke --out")
    assert [step["status"] for step in run["steps"]] == ["complete"] * 5
    assert 0 < run["elapsed_s"] < run["budget_s"]
    for order, name in enumerate(MEASUREMENTS, start=1):
        data = measurement(smoke, name)
        assert (data["order"], data["mode"], data["status"]) == (order, "smoke", "complete"), data
        assert data["results"] and not data["skipped"] and not data["errors"]


def test_ours_against_the_official_predictor_per_object_count(smoke):
    data = measurement(smoke, "1-versus-official")
    assert [row["objects"] for row in data["results"]] == list(SMOKE.object_counts)
    for row in data["results"]:
        assert row["frames"] == SMOKE.measured_calls
        assert row["official_ms"] > 0 and row["ours_ms"] > row["model_ms"] > 0
        assert row["ratio_ours_to_official"] == pytest.approx(row["ours_ms"] / row["official_ms"], abs=0.002)
        assert set(row["stages_ms"]) == STAGES and row["stages_ms"]["encode"] > 0
        assert row["image"] == "64x64 PNG RGB" and row["feature_cache"] == "miss"
        assert row["gpu_peak_mb"] is None and "no GPU" in row["gpu_memory_why_none"] and row["rss_mb"] > 0
    (note,) = data["notes"].values()
    assert note["precision"] in ("bf16", "fp32") and note["image_size"] == 256
    fitted = note["objects_per_call_in_100_s"]  # from the fit, whose slope the CPU's noise may tip
    if note["per_object_ms"] > 0:
        assert abs(fitted - (100_000 - note["per_frame_ms"]) / note["per_object_ms"]) <= 1  # ms rounded
    else:
        assert fitted is None


def test_annotators_against_worker_processes(smoke):
    data = measurement(smoke, "2-concurrency")
    cells = [(row["workers"], row["annotators"]) for row in data["results"]]
    assert cells == list(product(SMOKE.workers, SMOKE.annotators))
    for row in data["results"]:
        assert row["errors"] == 0 and row["calls"] == row["annotators"] * SMOKE.annotator_calls
        assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["max_ms"] and row["calls_per_s"] > 0
        assert len(row["worker_rss_mb"]) == row["workers"] and all(rss > 0 for rss in row["worker_rss_mb"])
        assert row["gpu_memory"]["per_process_mb"] is None and row["gpu_memory"]["why_none"]
    workers = data["notes"]["workers"]
    assert workers["processes"] == max(SMOKE.workers) and all(s > 0 for s in workers["init_context_s"])


def test_memory_over_a_long_session_and_the_cold_start(smoke):
    (row,) = measurement(smoke, "3-memory")["results"]
    calls = [sample["call"] for sample in row["samples"]]
    assert calls == list(range(SMOKE.memory_every, SMOKE.memory_calls + 1, SMOKE.memory_every))
    for sample in row["samples"]:
        assert 0 < sample["feature_cache_mb"] <= row["feature_cache_bound_mb"] and sample["rss_mb"] > 0
    assert row["flat_by"] == "rss_mb" and row["flat"] is True and row["state_bytes_per_object"] > 0
    assert row["gpu_resident_mb"] is None and row["gpu_memory_why_none"]
    (cold,) = measurement(smoke, "4-cold-start")["results"]
    assert cold["config"] == "tiny" and 0 < cold["init_context_s"] < cold["process_ready_s"]


def test_every_variant_with_its_fidelity(smoke):
    rows = {row["variant"]: row for row in measurement(smoke, "5-variants")["results"]}
    assert set(rows) == VARIANTS
    assert not rows["cuda_graph_encoder"]["applicable"] and "CUDA" in rows["cuda_graph_encoder"]["why"]
    for name in VARIANTS - {"cuda_graph_encoder"}:
        assert rows[name]["applicable"] and rows[name]["baseline_ms"] > 0 and rows[name]["variant_ms"] > 0
    assert rows["opencv_decode"]["fidelity"] == {"same_input_tensor": True}
    assert rows["masks_upsampled_on_device"]["fidelity"]["flipped_fraction"] == 0.0  # both on the CPU here
    assert 0 <= rows["batch_objects"]["fidelity"]["flipped_fraction"] < 0.05
    compiled = rows["torch_compile"]
    assert compiled["backend"] == "eager" and compiled["compile_s"] > 0
    exact = {"flipped_fraction": 0.0, "max_logit_diff": 0.0}
    assert compiled["fidelity"] == exact  # dynamo alone runs the same operations


def test_a_budget_too_small_skips_every_part_and_says_why(tmp_path):
    result = run_module(
        "bench.gpu_bench", "--smoke", "--out", str(tmp_path), "--budget-s", "0.5", timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name in MEASUREMENTS:
        data = measurement(tmp_path, name)
        assert data["status"] == "skipped" and not data["results"] and not data["errors"]
        reasons = [part["reason"] for part in data["skipped"]]
        assert "left of the 0 s budget" in reasons[0], reasons
        assert all("left of the 0 s budget" in reason or "did not run" in reason for reason in reasons)
    printed = run_module("bench.gpu_report", str(tmp_path), "--print", timeout=120)
    assert printed.returncode == 0, printed.stderr
    assert f"| GPU | | not measured yet | | | {ROW_MARK}" in printed.stdout
    assert "- official: skipped hiera tiny: estimated" in printed.stdout


def test_steps_picks_the_measurements_a_rerun_needs(tmp_path):
    result = run_module(
        "bench.gpu_bench", "--smoke", "--out", str(tmp_path), "--budget-s", "0.5", "--steps", "4", timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert {path.name for path in tmp_path.iterdir()} == {"0-run.json", "4-cold-start.json", "log.txt"}
    run = json.loads((tmp_path / "0-run.json").read_text())
    assert [step["step"] for step in run["steps"]] == ["4 cold start"]
    printed = run_module("bench.gpu_report", str(tmp_path), "--print", timeout=120)
    assert printed.returncode == 0, printed.stderr
    assert "- cold_start: skipped hiera tiny" in printed.stdout and "not started" not in printed.stdout


def copy_documents(root: Path) -> tuple[str, str]:
    (root / "docs").mkdir(parents=True)
    shutil.copy(ROOT / "README.md", root / "README.md")
    shutil.copy(ROOT / "docs" / "performance.md", root / "docs" / "performance.md")
    return (root / "README.md").read_text(), (root / "docs" / "performance.md").read_text()


def outside_block(text: str) -> str:
    return text.split(START)[0] + text.split(END)[1]


def test_the_report_renders_the_smoke_into_copies_of_the_documents(smoke, tmp_path):
    readme, performance = copy_documents(tmp_path)
    result = run_module("bench.gpu_report", str(smoke), "--root", str(tmp_path), timeout=120)
    assert result.returncode == 0, result.stderr
    new_readme = (tmp_path / "README.md").read_text()
    rows = [line for line in new_readme.split("\n") if line.endswith(ROW_MARK)]
    assert len(rows) == 1 and "hiera tiny" in rows[0] and f"torch {torch.__version__}" in rows[0]
    unmarked = [line for line in readme.split("\n") if not line.endswith(ROW_MARK)]
    assert [line for line in new_readme.split("\n") if not line.endswith(ROW_MARK)] == unmarked
    new_performance = (tmp_path / "docs" / "performance.md").read_text()
    assert outside_block(new_performance) == outside_block(performance)
    block = new_performance.split(START)[1].split(END)[0]
    assert "`python -m bench.gpu_bench --smoke --out" in block and "CPU smoke, not GPU figures" in block
    for title in (
        "Ours against the official",
        "Targets",
        "Concurrency",
        "GPU memory of one worker",
        "Cold start",
    ):
        assert f"**{title}" in block
    assert "| torch_compile | hiera tiny | 1 |" in block and "not applicable: needs CUDA" in block
    again = run_module("bench.gpu_report", str(smoke), "--root", str(tmp_path), timeout=120)
    assert again.returncode == 0
    assert (tmp_path / "README.md").read_text() == new_readme
    assert (tmp_path / "docs" / "performance.md").read_text() == new_performance


def test_the_report_keeps_smoke_figures_out_of_the_repository_documents(smoke):
    result = run_module("bench.gpu_report", str(smoke), timeout=120)
    assert result.returncode == 2 and "--smoke run" in result.stderr
    for path in (ROOT / "README.md", ROOT / "docs" / "performance.md"):
        assert "CPU smoke, not GPU figures" not in path.read_text()


def test_the_report_needs_its_markers():
    with pytest.raises(ReportError, match="no table row"):
        replace_rows("| a | b |\n| --- | --- |\n| GPU | x |\n", ["| GPU | y |"])
    with pytest.raises(ReportError, match="needs one"):
        replace_block(f"{END}\ntext\n{START}\n", ["figures"])
    assert replace_block(f"a\n{START}\nold\n{END}\nb", ["new"]) == f"a\n{START}\nnew\n{END}\nb"


def test_device_check_is_shellcheck_clean():
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    result = subprocess.run([shellcheck, "bench/device_check.sh"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
