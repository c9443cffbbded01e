"""Track objects through a video without CVAT, and write CVAT and COCO annotations.

    python -m track_video VIDEO.mp4|FRAMES_DIR --start 0 --target 120 \\
        (--cvat-xml annotations.xml | --coco instances.json | --mask object.png ... |
         --polygon x1,y1,x2,y2,... | --box x0,y0,x1,y1) \\
        [--xml tracks.xml] [--coco-out tracks.json] [--overlay preview.mp4|preview.gif] \\
        [--url http://127.0.0.1:8080]

The objects on the start frame are tracked frame by frame to the target frame, forward or backward.
By default SAM2 runs in this process (configured like the function: SAM2_CONFIG, SAM2_CHECKPOINT...);
with --url the frames go to a deployed function (or `python -m local_server`) over the same protocol.
The annotation files are read and written by annotation_files.py.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from annotation_files import (
    AnnotationError,
    TrackedObject,
    objects_from_coco,
    objects_from_cvat_xml,
    objects_from_mask_png,
    write_coco,
    write_cvat_xml,
)
from config import ConfigError, Settings
from images import to_rgb
from shape_codecs import ShapeError, shape_area_mask

REVERSE_BLOCK = 32  # video frames decoded at once when tracking backward
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
# fmt: off
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40)]
# fmt: on


# One frame tracked: (frame RGB, the start shapes, the states of the last frame; none on the start
# frame) -> (shapes, states), per object in order.
Answer = tuple[list[Any], list[str]]
FrameTracker = Callable[[np.ndarray, Sequence[Any], Sequence[str]], Answer]


class CliError(Exception):
    """Something the user can fix; printed without a traceback."""


class VideoEnded(CliError):
    """A video frame that cannot be decoded: the file ends (or breaks) before the frame its header
    promised. Tracking stops there and keeps what it tracked."""

    def __init__(self, path: Path, frame: int):
        super().__init__(f"{path}: frame {frame} cannot be decoded")


# ---- frames -----------------------------------------------------------------------------------


class FrameSource:
    """Frames by index, from a folder of images or a video file."""

    def __init__(self, path: Path):
        self.path = path
        if path.is_dir():
            files = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
            self.files = sorted(files, key=_natural_key)
            if not self.files:
                raise CliError(f"{path} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            self.count = len(self.files)
        elif path.is_file():
            self.files = []
            capture = cv2.VideoCapture(str(path))
            if not capture.isOpened():
                raise CliError(f"{path} cannot be read as a video")
            self.count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            self.fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
            capture.release()
        else:
            raise CliError(f"{path} does not exist")

    def name(self, index: int) -> str:
        return self.files[index].name if self.files else f"frame_{index:06d}.png"

    def frames(self, first: int, last: int) -> Iterator[tuple[int, np.ndarray]]:
        """RGB frames first..last (inclusive), in that order (last < first goes backward)."""
        step = 1 if last >= first else -1
        if self.files:
            for index in range(first, last + step, step):
                yield index, np.asarray(to_rgb(Image.open(self.files[index])))
            return
        if step > 0:
            yield from self._decode(first, last)
            return
        # Backward: decode blocks forward from a seek point, newest block first, so memory holds one
        # block and not the whole range. A block that breaks off has lost its newest frames, the
        # next ones backward: tracking stops before the block.
        for block_end in range(first, last - 1, -REVERSE_BLOCK):
            block_start = max(last, block_end - REVERSE_BLOCK + 1)
            yield from reversed(list(self._decode(block_start, block_end)))

    def _decode(self, low: int, high: int) -> Iterator[tuple[int, np.ndarray]]:
        capture = cv2.VideoCapture(str(self.path))
        capture.set(cv2.CAP_PROP_POS_FRAMES, low)
        try:
            for index in range(low, high + 1):
                ok, frame = capture.read()
                if not ok:
                    raise VideoEnded(self.path, index)
                yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def png_bytes(frame: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


# ---- initial objects on the command line --------------------------------------------------------


def _numbers(text: str, what: str, count: int | None = None) -> list[float]:
    try:
        values = [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise CliError(f"{what} {text!r}: expected comma-separated numbers") from None
    if count is not None and len(values) != count:
        raise CliError(f"{what} {text!r}: expected {count} numbers")
    return values


# ---- the function: in this process, or over HTTP -----------------------------------------------


class InProcessTracker:
    """SAM2 in this process, through the call path every front end uses (tracking_call.py), with
    in-memory states and no call budget (no CVAT deadline to meet). Frames go to the model as decoded
    pixels: nothing is encoded to an image file and back."""

    def __init__(self):
        from model_handler import Sam2Tracker
        from process_settings import claim_process
        from state_store import MemoryStateStore
        from tracking_call import TrackingCall

        settings = Settings.from_env()
        tracker_config = settings.tracker
        if "SAM2_FEATURE_CACHE_MB" not in os.environ:
            # one pass over a video never sees a frame twice: the cache would only hold memory
            tracker_config = replace(tracker_config, feature_cache_mb=0)
        process = claim_process(tracker_config)
        tracker = Sam2Tracker.from_config(tracker_config, process.device)
        for name, why in tracker.preparation.skipped.items():
            print(f"note: {name} skipped, {why}", file=sys.stderr)
        self.call = TrackingCall(
            tracker, MemoryStateStore(), settings.shapes.polygon_tolerance, settings.limits
        )

    def __call__(self, frame: np.ndarray, shapes: Sequence[Any], states: Sequence[str]) -> Answer:
        from call_inputs import CallRefused, ObjectInput, StartShape

        if states:
            objects = [ObjectInput(token=token) for token in states]
        else:
            objects = [ObjectInput(shape=StartShape(s["type"], s["points"], sent=s)) for s in shapes]
        try:
            answer = self.call.run(frame, objects)
        except CallRefused as error:
            raise CliError(f"the tracker refused the frame: {error.message}") from None
        return answer.shapes, answer.states


class RemoteFunction:
    """A deployed function (or local_server) over CVAT's protocol: each frame sent as PNG."""

    def __init__(self, url: str, timeout: float = 600):
        self.url = url
        self.timeout = timeout

    def __call__(self, frame: np.ndarray, shapes: Sequence[Any], states: Sequence[str]) -> Answer:
        image = base64.b64encode(png_bytes(frame)).decode()
        if states:
            body = {"image": image, "shapes": [None] * len(states), "states": list(states)}
        else:
            body = {"image": image, "shapes": list(shapes), "states": []}
        answer = self._post(body)
        return answer["shapes"], answer["states"]

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            self.url,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            try:
                message = json.loads(error.read())["error"]
            except (ValueError, KeyError):
                message = error.reason
            raise CliError(f"{self.url} answered {error.code}: {message}") from None
        except (urllib.error.URLError, OSError) as error:
            raise CliError(f"cannot reach {self.url}: {error}") from None


@dataclass
class Tracking:
    """Shapes per frame index, in tracking order (the start frame holds the given shapes; None =
    absent), and the frame where the video ended before the target, if it did."""

    shapes: dict[int, list[Any]] = field(default_factory=dict)
    ended: VideoEnded | None = None


def track(
    function: FrameTracker,
    source: FrameSource,
    start: int,
    target: int,
    objects: Sequence[TrackedObject],
    progress: bool = True,
) -> Tracking:
    """Track from `start` to `target`, or to the last frame before one that cannot be decoded."""
    from tqdm import tqdm

    tracking = Tracking()
    states: list[str] = []
    given = [o.shape for o in objects]
    with tqdm(total=abs(target - start) + 1, desc="tracking", unit="frame", disable=not progress) as bar:
        try:
            for index, frame in source.frames(start, target):
                tracking.shapes[index], states = function(frame, given, states)
                bar.update(1)
        except VideoEnded as ended:
            tracking.ended = ended
    return tracking


# ---- overlay ----------------------------------------------------------------------------------


def write_overlay(path: Path, source: FrameSource, shapes: dict[int, list[Any]], fps: float) -> None:
    """The tracked masks drawn over the frames: MP4 (OpenCV) or GIF (Pillow)."""
    frames = sorted(shapes)
    rendered = []
    writer = None
    for index, frame in source.frames(frames[0], frames[-1]):
        masks = {
            track_id: shape_area_mask(shape["type"], shape["points"], frame.shape[:2])
            for track_id, shape in enumerate(shapes[index])
            if shape is not None
        }
        canvas = frame.astype(np.float32)
        for track_id, mask in masks.items():
            color = np.array(PALETTE[track_id % len(PALETTE)], np.float32)
            canvas[mask] = canvas[mask] * 0.55 + color * 0.45
        image = canvas.astype(np.uint8)
        for track_id, mask in masks.items():
            contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(image, contours, -1, PALETTE[track_id % len(PALETTE)], 2)
        if path.suffix.lower() == ".gif":
            rendered.append(Image.fromarray(image))
            continue
        if writer is None:
            height, width = image.shape[:2]
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if writer is not None:
        writer.release()
    if rendered:
        rendered[0].save(path, save_all=True, append_images=rendered[1:], duration=int(1000 / fps), loop=0)


# ---- command line -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m track_video", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="a video file (MP4...) or a folder of images")
    parser.add_argument("--start", type=int, required=True, help="frame index of the given objects")
    parser.add_argument("--target", type=int, required=True, help="frame index to track to (before or after)")
    given = parser.add_argument_group("objects on the start frame (at least one)")
    given.add_argument("--cvat-xml", type=Path, help="CVAT for images/video 1.1 export")
    given.add_argument("--coco", type=Path, help="COCO instances JSON")
    given.add_argument("--mask", type=Path, action="append", default=[], help="mask PNG (repeatable)")
    given.add_argument("--polygon", action="append", default=[], help="x1,y1,x2,y2,... (repeatable)")
    given.add_argument("--box", action="append", default=[], help="x0,y0,x1,y1 (repeatable)")
    parser.add_argument("--xml", type=Path, help="write CVAT for video 1.1 XML (tracks)")
    parser.add_argument("--coco-out", type=Path, help="write COCO instances JSON")
    parser.add_argument("--overlay", type=Path, help="write the masks over the frames: .mp4 or .gif")
    parser.add_argument("--fps", type=float, default=0, help="overlay frame rate (default: the video's)")
    parser.add_argument("--url", help="a deployed function (or local_server) instead of SAM2 in this process")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def gather_objects(args: argparse.Namespace, source: FrameSource) -> list[TrackedObject]:
    name = source.name(args.start)
    objects: list[TrackedObject] = []
    if args.cvat_xml:
        objects += objects_from_cvat_xml(args.cvat_xml, args.start, name)
    if args.coco:
        objects += objects_from_coco(args.coco, name)
    for path in args.mask:
        objects += objects_from_mask_png(path)
    for text in args.polygon:
        objects.append(TrackedObject("object", {"type": "polygon", "points": _numbers(text, "--polygon")}))
    for text in args.box:
        objects.append(TrackedObject("object", {"type": "rectangle", "points": _numbers(text, "--box", 4)}))
    if not objects:
        raise CliError(
            f"no objects on the start frame {args.start} ({name}): give --cvat-xml, --coco, "
            "--mask, --polygon or --box"
        )
    return objects


def run(args: argparse.Namespace) -> dict[int, list[Any]]:
    source = FrameSource(args.source)
    for which in ("start", "target"):
        value = getattr(args, which)
        if not 0 <= value < source.count:
            raise CliError(f"--{which} {value} is outside the video's frames 0..{source.count - 1}")
    objects = gather_objects(args, source)
    function = RemoteFunction(args.url) if args.url else InProcessTracker()
    tracking = track(function, source, args.start, args.target, objects, progress=not args.quiet)
    if not tracking.shapes:
        raise CliError(f"{tracking.ended}: the start frame {args.start} is past the video's end")
    write_outputs(args, source, objects, tracking.shapes)
    if tracking.ended is not None:
        first, last = next(iter(tracking.shapes)), next(reversed(tracking.shapes))
        raise CliError(
            f"{tracking.ended}: the video ends there; tracked and wrote frames {first}..{last} "
            f"of {args.start}..{args.target}"
        )
    return tracking.shapes


def write_outputs(
    args: argparse.Namespace,
    source: FrameSource,
    objects: Sequence[TrackedObject],
    shapes: dict[int, list[Any]],
) -> None:
    """The annotation files and the overlay for the frames tracked."""
    size = next(iter(source.frames(args.start, args.start)))[1].shape[:2]
    if args.xml:
        write_cvat_xml(args.xml, source.path.name, objects, shapes, size)
    if args.coco_out:
        write_coco(args.coco_out, source.path.name, source.name, objects, shapes, size)
    if args.overlay:
        write_overlay(args.overlay, source, shapes, args.fps or getattr(source, "fps", 10.0))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        shapes = run(args)
    except (CliError, AnnotationError, ConfigError, ShapeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    lost = sum(shape is None for frame in shapes.values() for shape in frame)
    print(
        f"tracked {len(next(iter(shapes.values())))} object(s) over {len(shapes)} frames "
        f"({lost} absent object-frames)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
