"""The GPU benchmark's output folder as the GPU rows of README.md's sizing table and the GPU figures of
docs/performance.md.

    python -m bench.gpu_report FOLDER [--root DIR] [--print]

FOLDER is what `python -m bench.gpu_bench --out FOLDER` wrote (on a lent GPU: the device tool's
output). The generated text replaces, in README.md, the table rows that end with `<!-- gpu-bench -->`
(an extra cell, which Markdown tables drop) and, in docs/performance.md, everything between
`<!-- gpu-bench:start -->` and `<!-- gpu-bench:end -->`; running it again regenerates them. --root
writes into a copy of the repository's documents instead; a --smoke folder (CPU figures) is refused
for the repository's own documents. --print writes nothing and prints the text.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.gpu.output import RUN_FILE

ROOT = Path(__file__).resolve().parents[1]
ROW_MARK = "<!-- gpu-bench -->"
START, END = "<!-- gpu-bench:start -->", "<!-- gpu-bench:end -->"
FILES = {
    "official": "1-versus-official.json",
    "concurrency": "2-concurrency.json",
    "memory": "3-memory.json",
    "cold_start": "4-cold-start.json",
    "variants": "5-variants.json",
}


class ReportError(Exception):
    """The folder or a document cannot be rendered; the message says why."""


@dataclass(frozen=True)
class Results:
    run: dict[str, Any]
    parts: dict[str, dict[str, Any]]  # FILES' keys; a measurement that never started is absent

    @classmethod
    def read(cls, folder: Path) -> Results:
        if not (folder / RUN_FILE).is_file():
            raise ReportError(f"{folder} has no {RUN_FILE}: not an output folder of bench.gpu_bench")
        parts = {}
        for key, name in FILES.items():
            if (folder / name).is_file():
                parts[key] = json.loads((folder / name).read_text())
        return cls(json.loads((folder / RUN_FILE).read_text()), parts)

    def rows(self, key: str) -> list[dict[str, Any]]:
        return self.parts.get(key, {}).get("results", [])

    def notes(self, key: str) -> dict[str, Any]:
        return self.parts.get(key, {}).get("notes", {})

    @property
    def smoke(self) -> bool:
        return self.run.get("mode") == "smoke"

    def card(self) -> str:
        """E.g. "NVIDIA H200, driver 580.65.06, torch 2.11.0+cu130"."""
        driver = f", driver {self.run['driver']}" if self.run.get("driver") else ""
        smoke = " (CPU smoke, not GPU figures)" if self.smoke else ""
        return f"{self.run.get('device')}{driver}, torch {self.run.get('torch')}{smoke}"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    if value >= 100:
        return f"{value:.0f} ms"
    return f"{value:.1f} ms" if value >= 1 else f"{value:.2f} ms"


def objects_of(count: int) -> str:
    return f"{count} object" if count == 1 else f"{count} objects"


def seconds_list(values: list[float | None] | None) -> str:
    return ", ".join(f"{v} s" for v in values or []) or "–"


def fmt_mb(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f} MB"


def fmt_ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}x"


def yes(value: bool | None) -> str:
    return "–" if value is None else "yes" if value else "**no**"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


# ---- README's sizing rows ---------------------------------------------------------------------


def readme_rows(results: Results) -> list[str]:
    """One row per model of step 1 with a fit: per frame, per object, objects in a 100 s call."""
    frame = frame_size(results)
    rows = []
    for config, note in results.notes("official").items():
        if "per_frame_ms" not in note:
            continue
        machine = f"{results.card()}, hiera {config}, {frame} ([how](docs/performance.md#gpu))"
        objects = note.get("objects_per_call_in_100_s")
        cells = [
            machine,
            note.get("precision", "–"),
            fmt_ms(note["per_frame_ms"]),
            fmt_ms(note["per_object_ms"]),
            f"{objects:,}" if objects is not None else "–",
        ]
        rows.append("| " + " | ".join(cells) + f" | {ROW_MARK}")
    if not rows:
        rows.append(f"| GPU | | not measured yet | | | {ROW_MARK}")
    return rows


def frame_size(results: Results) -> str:
    image = next((row.get("image") for row in results.rows("official") if row.get("image")), None)
    return f"{image.split()[0]} {image.split()[1]}" if image else "PNG frames"


# ---- docs/performance.md's GPU figures --------------------------------------------------------


def performance_block(results: Results) -> list[str]:
    run = results.run
    cuda = f" (CUDA {run['cuda']}, {fmt_mb(run.get('gpu_memory_mb'))})" if run.get("cuda") else ""
    lines = [
        f"Measured on {results.card()}{cuda}, sam2 "
        f"{run.get('sam2')}, Python {run.get('python')}, {run.get('cpu_cores')} cores of {run.get('cpu')}, "
        f"{str(run.get('started', ''))[:10]}, by `{run.get('command')}` in {run.get('elapsed_s')} s of its "
        f"{run.get('budget_s'):.0f} s budget; this section is `python -m bench.gpu_report <folder>`'s.",
        "",
    ]
    for section in (official_section, targets_section, concurrency_section, memory_section):
        lines += section(results)
    for section in (cold_start_section, variants_section, skipped_section):
        lines += section(results)
    return lines


def official_section(results: Results) -> list[str]:
    rows = results.rows("official")
    if not rows:
        return ["**Ours against the official predictor**: not measured in this run.", ""]
    header = ["model", "objects", "official", "ours, whole call", "ours / official", "model (encode + track)"]
    header += ["model / official", "outside the model", "decode", "load", "store", "shapes", "GPU peak"]
    body = []
    for row in rows:
        stages = row["stages_ms"]
        body.append(
            [
                f"hiera {row['config']}",
                str(row["objects"]),
                fmt_ms(row["official_ms"]),
                fmt_ms(row["ours_ms"]),
                fmt_ratio(row["ratio_ours_to_official"]),
                fmt_ms(row["model_ms"]),
                fmt_ratio(row["ratio_model_to_official"]),
                fmt_ms(row["outside_model_ms"]),
                *(fmt_ms(stages[name]) for name in ("decode", "load", "store", "shapes")),
                fmt_mb(row.get("gpu_peak_mb")),
            ]
        )
    lines = [
        f"**Ours against the official predictor**, per frame once the memory bank is full (median of "
        f"{rows[0]['frames']} frames, {frame_size(results)}, objects started from masks and polygons in "
        "turn). "
        "Official: `propagate_in_video`, frames preloaded, bf16 autocast, each frame waited for. Ours: the "
        "whole call through the Nuclio handler and a real redis-server, as the trigger sees it. On a GPU the "
        "encode stage returns before the GPU is done, so only encode + track (the model) is exact.",
        "",
        *table(header, body),
        "",
    ]
    for config, note in results.notes("official").items():
        if "per_frame_ms" in note:
            lines.append(
                f"- hiera {config} ({note['model']}): {fmt_ms(note['per_frame_ms'])} per call + "
                f"{fmt_ms(note['per_object_ms'])} per object (official "
                f"{fmt_ms(note['official_per_frame_ms'])} + {fmt_ms(note['official_per_object_ms'])}), "
                "GPU memory "
                f"{note.get('gpu_peak_mb_per_object', '–')} MB more per object at the peak; init_context "
                f"{note['init_context_s']} s in a warm process."
            )
    return [*lines, ""]


def targets_section(results: Results) -> list[str]:
    """Issue 21's targets, each with the figure that meets or misses it."""
    official = {(row["config"], row["objects"]): row for row in results.rows("official")}
    body = []
    for objects, limit in ((1, 1.1), (10, 1.0), (30, 1.0)):
        row = official.get(("large", objects))
        ratio = row["ratio_model_to_official"] if row else None
        target = f"model ≤ {limit}x official, hiera large, {objects_of(objects)}"
        body.append([target, fmt_ratio(ratio), yes(None if ratio is None else ratio <= limit)])
    for row in results.rows("official"):
        limit = 30 + 2 * row["objects"]
        target = f"outside the model ≤ {limit} ms, hiera {row['config']}, {objects_of(row['objects'])}"
        body.append([target, fmt_ms(row["outside_model_ms"]), yes(row["outside_model_ms"] <= limit)])
    for row in results.rows("memory"):
        growth = f"{row['growth_second_half_mb']} MB over calls {row['calls'] // 2}-{row['calls']}"
        body.append([f"memory flat over {row['calls']} calls ({row['flat_by']})", growth, yes(row["flat"])])
    for row in results.rows("concurrency"):
        if row["annotators"] == 8:
            target = f"8 annotators, p95 ≤ 0.5 s, hiera {row['config']}, {row['workers']} workers"
            body.append([target, fmt_ms(row["p95_ms"]), yes(row["p95_ms"] <= 500)])
    row = official.get(("tiny", 1))
    moonshot = row["ours_ms"] if row else None
    body.append(
        ["moonshot: hiera tiny, 1 object, whole call ≤ 30 ms", fmt_ms(moonshot), yes_or_none(moonshot, 30)]
    )
    return ["**Targets** (issue 21):", "", *table(["target", "measured", "met"], body), ""]


def yes_or_none(value: float | None, limit: float) -> str:
    return yes(None if value is None else value <= limit)


def concurrency_section(results: Results) -> list[str]:
    rows = results.rows("concurrency")
    if not rows:
        return ["**Concurrency**: not measured in this run.", ""]
    workers = results.notes("concurrency").get("workers", {})
    body = [
        [
            str(row["workers"]),
            str(row["annotators"]),
            f"{row['calls_per_s']:.1f}",
            fmt_ms(row["p50_ms"]),
            fmt_ms(row["p95_ms"]),
            fmt_ms(row["max_ms"]),
            str(row["errors"]),
            per_worker_memory(row),
        ]
        for row in rows
    ]
    header = ["workers", "annotators", "calls/s", "p50", "p95", "max", "errors", "GPU memory per worker"]
    return [
        f"**Concurrency**: annotators tracking at once (hiera {rows[0]['config']}, "
        f"{objects_of(rows[0]['objects_per_annotator'])} each, each sending its next frame when the answer "
        "is back; latency as the client measures it, calls with a full memory bank) against worker processes "
        "sharing the GPU (`python -m local_server --workers 1` each, as Nuclio's `maxWorkers`; a call goes "
        f"to a free worker). Workers ready in {seconds_list(workers.get('ready_s'))} (init_context "
        f"{seconds_list(workers.get('init_context_s'))}); their feature caches off, as the cells reuse the "
        "annotators' videos.",
        "",
        *table(header, body),
        "",
    ]


def per_worker_memory(row: dict[str, Any]) -> str:
    memory = row.get("gpu_memory", {})
    values = memory.get("per_process_mb") or memory.get("listed_mb")
    return ", ".join(fmt_mb(v) for v in values) if values else "–"


def memory_section(results: Results) -> list[str]:
    rows = results.rows("memory")
    if not rows:
        return ["**GPU memory over a long session**: not measured in this run.", ""]
    row = rows[0]
    key = row["flat_by"]
    samples = ", ".join(f"{s['call']}: {fmt_mb(s[key])}" for s in row["samples"])
    resident = fmt_mb(row.get("gpu_resident_mb")) if row.get("gpu_resident_mb") is not None else "–"
    return [
        f"**GPU memory of one worker over a long session** (hiera {row['config']}, "
        f"{objects_of(row['objects'])}, "
        f"{row['calls']} calls through the handler cycling through {row['distinct_frames']} frames, so the "
        f"feature cache fills to its bound of {fmt_mb(row['feature_cache_bound_mb'])}): resident after the "
        f"start {resident}, peak {fmt_mb(row.get('gpu_peak_mb'))} above what the process held before, "
        f"state {row['state_bytes_per_object']:,} bytes per object. `{key}` by call: {samples}; "
        f"{row['growth_second_half_mb']} MB over the second half: flat {yes(row['flat'])}.",
        "",
    ]


def cold_start_section(results: Results) -> list[str]:
    rows = results.rows("cold_start")
    if not rows:
        return ["**Cold start**: not measured in this run.", ""]
    body = [
        [
            f"hiera {row['config']}",
            f"{row['process_ready_s']:.1f} s",
            f"{row['init_context_s']} s",
            fmt_mb(row.get("gpu_memory_mb")),
            fmt_mb(row.get("rss_mb")),
        ]
        for row in rows
    ]
    header = ["model", "process start to first answer", "init_context", "GPU memory", "RSS"]
    return ["**Cold start** of a worker process (`python -m local_server`):", "", *table(header, body), ""]


def variants_section(results: Results) -> list[str]:
    rows = results.rows("variants")
    if not rows:
        return ["**Variants**: not measured in this run.", ""]
    body = []
    for row in rows:
        if not row["applicable"]:
            body.append([row["variant"], "–", "–", "–", "–", "–", "–", f"not applicable: {row['why']}"])
            continue
        details = {k: v for k, v in row.items() if k in ("compile_s", "capture_s", "backend", "device")}
        body.append(
            [
                row["variant"],
                f"hiera {row['config']}",
                str(row.get("objects", "–")),
                f"{fmt_ms(row['baseline_ms'])} ({row['baseline']})",
                fmt_ms(row["variant_ms"]),
                fmt_ratio(row["speedup"]),
                ", ".join(f"{k} {v}" for k, v in row["fidelity"].items()),
                ", ".join(f"{k} {v}" for k, v in details.items()),
            ]
        )
    header = [
        "variant",
        "model",
        "objects",
        "the function as it is",
        "variant",
        "speed-up",
        "fidelity",
        "notes",
    ]
    return ["**Variants** that may cut GPU time, same frames, same run:", "", *table(header, body), ""]


def skipped_section(results: Results) -> list[str]:
    lines = []
    for key, data in results.parts.items():
        lines += [f"- {key}: skipped {s['what']}: {s['reason']}" for s in data.get("skipped", [])]
        lines += [f"- {key}: {e['what']} failed: {e['error']}" for e in data.get("errors", [])]
        if data.get("status") == "running":
            lines.append(f"- {key}: cut off while running")
    asked = results.run.get("steps_asked", range(1, len(FILES) + 1))
    for number, key in enumerate(FILES, start=1):
        if number in asked and key not in results.parts:
            lines.append(f"- {key}: not started (the run ended first)")
    return ["**Skipped, failed or cut off**:", "", *lines, ""] if lines else []


# ---- writing the documents --------------------------------------------------------------------


def replace_rows(text: str, rows: list[str]) -> str:
    """README.md with its marked rows replaced by `rows`, where the first marked row stood."""
    lines = text.split("\n")
    marked = [index for index, line in enumerate(lines) if line.rstrip().endswith(ROW_MARK)]
    if not marked:
        raise ReportError(f"README.md has no table row ending with {ROW_MARK}")
    kept = [line for index, line in enumerate(lines) if index not in marked]
    return "\n".join(kept[: marked[0]] + rows + kept[marked[0] :])


def replace_block(text: str, block: list[str]) -> str:
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ReportError(f"docs/performance.md needs one {START} line before one {END} line")
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    return before + START + "\n" + "\n".join(block).rstrip() + "\n" + END + after


def update(path: Path, change: Callable[[str], str]) -> None:
    path.write_text(change(path.read_text()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the output folder of python -m bench.gpu_bench")
    parser.add_argument("--root", type=Path, help="a copy of the repository to write into (README.md, docs/)")
    parser.add_argument("--print", action="store_true", help="print the text, write nothing")
    args = parser.parse_args(argv)
    try:
        results = Results.read(args.folder)
        rows, block = readme_rows(results), performance_block(results)
        if args.print:
            print("\n".join(["README.md:", *rows, "", "docs/performance.md:", *block]))
            return 0
        root = args.root or ROOT
        if results.smoke and root.resolve() == ROOT:
            raise ReportError(
                f"{args.folder} is a --smoke run (CPU, tiny sizes), not GPU figures: render it into a copy "
                "with --root, or print it with --print"
            )
        update(root / "README.md", lambda text: replace_rows(text, rows))
        update(root / "docs" / "performance.md", lambda text: replace_block(text, block))
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {len(rows)} README.md rows and {len(block)} docs/performance.md lines under {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
