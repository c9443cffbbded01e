"""Annotation files of the offline CLI (track_video.py): the objects on a start frame read from CVAT
1.1 XML, COCO instances JSON or mask PNGs, and tracks written as CVAT for video 1.1 XML or COCO.

Shapes are CVAT's (``{"type": "mask" | "polygon" | "rectangle", "points": [...]}``, see shape_codecs);
COCO RLE goes through pycocotools.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as coco_mask

from shape_codecs import mask_to_rle, polygon_to_mask, run_lengths, shape_area_mask


class AnnotationError(Exception):
    """An annotation file that cannot be read as such; the message names the file and what is wrong."""


@dataclass(frozen=True)
class TrackedObject:
    label: str
    shape: dict[str, Any]  # the start shape, CVAT style: {"type": ..., "points": [...]}


# ---- reading ----------------------------------------------------------------------------------


def _points_attr(text: str) -> list[float]:
    return [float(v) for pair in text.split(";") for v in pair.split(",")]


def _xml_shape(element: ET.Element) -> dict[str, Any] | None:
    if element.tag == "polygon":
        return {"type": "polygon", "points": _points_attr(element.get("points", ""))}
    if element.tag == "box":
        return {"type": "rectangle", "points": [float(element.get(k)) for k in ("xtl", "ytl", "xbr", "ybr")]}
    if element.tag == "mask":
        left, top = int(element.get("left")), int(element.get("top"))
        width, height = int(element.get("width")), int(element.get("height"))
        runs = [int(v) for v in element.get("rle", "").split(",") if v.strip()]
        return {"type": "mask", "points": [*runs, left, top, left + width - 1, top + height - 1]}
    return None


def _checked_xml_shape(path: Path, element: ET.Element, frame: int) -> dict[str, Any] | None:
    try:
        return _xml_shape(element)
    except (TypeError, ValueError):  # a missing or non-numeric attribute
        text = ET.tostring(element, encoding="unicode").strip()
        raise AnnotationError(
            f"{path}: a <{element.tag}> on frame {frame} has missing or non-numeric coordinates: {text[:200]}"
        ) from None


def objects_from_cvat_xml(path: Path, frame: int, frame_name: str) -> list[TrackedObject]:
    """Shapes on `frame` from a CVAT for images 1.1 or CVAT for video 1.1 export."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as error:
        raise AnnotationError(f"{path} cannot be read as CVAT XML: {error}") from None
    found = []
    for image in root.iter("image"):
        if image.get("id") == str(frame) or Path(image.get("name", "")).name == frame_name:
            for element in image:
                shape = _checked_xml_shape(path, element, frame)
                if shape:
                    found.append(TrackedObject(element.get("label", "object"), shape))
    for track in root.iter("track"):
        for element in track:
            if element.get("frame") == str(frame) and element.get("outside", "0") == "0":
                shape = _checked_xml_shape(path, element, frame)
                if shape:
                    found.append(TrackedObject(track.get("label", "object"), shape))
    return found


def coco_rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE (column-major; counts as a list or as COCO's compressed string) to a bool mask."""
    try:
        height, width = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError):
        raise AnnotationError('a COCO RLE needs "size": [height, width] and "counts"') from None
    if height <= 0 or width <= 0:
        raise AnnotationError(f"a COCO RLE has the empty size {height}x{width}")
    if isinstance(counts, str):
        counts = counts.encode()
    if isinstance(counts, list):
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise AnnotationError("COCO RLE counts must be whole numbers, not negative")
        if sum(counts) != height * width:
            raise AnnotationError(
                f"a COCO RLE's counts add up to {sum(counts)} pixels, its size "
                f"{height}x{width} has {height * width}"
            )
        compressed = coco_mask.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    elif isinstance(counts, bytes):
        compressed = {"size": [height, width], "counts": counts}
    else:
        raise AnnotationError("COCO RLE counts must be a list of numbers or a compressed string")
    # pycocotools refuses counts that run past the image, but leaves the pixels after counts that stop
    # short uninitialised. Decoded in one batch with another image after it, the mask takes that image's
    # first pixels into the gap: decoded before an empty and before a full image, it then differs.
    fillers = [
        coco_mask.frPyObjects({"size": [height, width], "counts": c}, height, width)
        for c in ([height * width], [0, height * width])
    ]
    try:
        padded = [coco_mask.decode([compressed, filler])[..., 0] for filler in fillers]
    except ValueError:
        raise AnnotationError(f"a COCO RLE covers more pixels than its size {height}x{width}") from None
    if not np.array_equal(*padded):
        raise AnnotationError(f"a COCO RLE covers fewer pixels than its size {height}x{width}")
    return padded[0].astype(bool)


def mask_to_coco_rle(mask: np.ndarray) -> dict[str, Any]:
    """Uncompressed COCO RLE (list counts) of a bool mask."""
    counts = run_lengths(mask.T.reshape(-1))  # column-major, as COCO counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def _coco_shape(annotation: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    segmentation = annotation.get("segmentation")
    if isinstance(segmentation, dict):
        mask = coco_rle_to_mask(segmentation)
        if mask.shape != size:
            raise AnnotationError(
                f"its RLE is {mask.shape[1]}x{mask.shape[0]} and its image {size[1]}x{size[0]}"
            )
        return {"type": "mask", "points": mask_to_rle(mask)}
    if isinstance(segmentation, list) and len(segmentation) == 1:
        return {"type": "polygon", "points": [float(v) for v in segmentation[0]]}
    if isinstance(segmentation, list) and segmentation:
        mask = np.zeros(size, bool)
        for polygon in segmentation:
            mask |= polygon_to_mask(polygon, size)
        return {"type": "mask", "points": mask_to_rle(mask)}
    x, y, w, h = annotation["bbox"]
    return {"type": "rectangle", "points": [x, y, x + w, y + h]}


def objects_from_coco(path: Path, frame_name: str) -> list[TrackedObject]:
    """The annotations of the image named `frame_name` (file name only, any folder) in COCO instances
    JSON: polygons, RLE masks (list or compressed counts) or, without segmentation, boxes."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise AnnotationError(f"{path} cannot be read as COCO JSON: {error}") from None
    images = {image["id"]: image for image in data.get("images", [])}
    matches = [i for i, image in images.items() if Path(image.get("file_name", "")).name == frame_name]
    if not matches:
        names = ", ".join(sorted(Path(i.get("file_name", "")).name for i in images.values())[:5])
        raise AnnotationError(f"{path} has no image named {frame_name} (it has e.g. {names})")
    image = images[matches[0]]
    try:
        size = (int(image["height"]), int(image["width"]))
    except (KeyError, TypeError, ValueError):
        raise AnnotationError(f"{path}: image {frame_name} needs a height and a width") from None
    labels = {c["id"]: c["name"] for c in data.get("categories", [])}
    found = []
    for annotation in data.get("annotations", []):
        if annotation.get("image_id") != image["id"]:
            continue
        label = labels.get(annotation.get("category_id"), "object")
        try:
            shape = _coco_shape(annotation, size)
        except (AnnotationError, KeyError, TypeError, ValueError) as error:  # ShapeError is a ValueError
            reason = f"it has no {error}" if isinstance(error, KeyError) else str(error)
            raise AnnotationError(f"{path}: annotation {annotation.get('id')}: {reason}") from None
        found.append(TrackedObject(label, shape))
    return found


def objects_from_mask_png(path: Path) -> list[TrackedObject]:
    """Every distinct non-zero value of the image is an object (a binary PNG is one object)."""
    try:
        pixels = np.asarray(Image.open(path))
    except OSError as error:
        raise AnnotationError(f"{path} cannot be read as an image: {error}") from None
    if pixels.ndim == 3:
        pixels = pixels[..., :3].max(axis=2) if pixels.shape[2] >= 3 else pixels[..., 0]
    values = [int(v) for v in np.unique(pixels) if v != 0]
    objects = []
    for value in values:
        label = path.stem if len(values) == 1 else f"{path.stem}-{value}"
        objects.append(TrackedObject(label, {"type": "mask", "points": mask_to_rle(pixels == value)}))
    return objects


# ---- writing ----------------------------------------------------------------------------------


def _shape_attributes(shape: dict[str, Any]) -> tuple[str, dict[str, str]]:
    points = shape["points"]
    if shape["type"] == "polygon":
        pairs = ";".join(f"{x:.2f},{y:.2f}" for x, y in zip(points[0::2], points[1::2], strict=True))
        return "polygon", {"points": pairs}
    if shape["type"] == "rectangle":
        return "box", {k: f"{v:.2f}" for k, v in zip(("xtl", "ytl", "xbr", "ybr"), points, strict=True)}
    *runs, left, top, right, bottom = (int(v) for v in points)
    return "mask", {
        "rle": ", ".join(str(r) for r in runs),
        "left": str(left),
        "top": str(top),
        "width": str(right - left + 1),
        "height": str(bottom - top + 1),
    }


def write_cvat_xml(
    path: Path,
    video_name: str,
    objects: Sequence[TrackedObject],
    shapes: dict[int, list[Any]],
    size: tuple[int, int],
) -> None:
    """CVAT for video 1.1: one track per object, a keyframe on every tracked frame, `outside` where
    SAM2 says the object is absent. `shapes`: per frame index, a shape or None per object."""
    frames = sorted(shapes)
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    for key, value in (
        ("name", video_name),
        ("size", str(len(frames))),
        ("mode", "interpolation"),
        ("overlap", "0"),
        ("start_frame", str(frames[0])),
        ("stop_frame", str(frames[-1])),
    ):
        ET.SubElement(task, key).text = value
    labels = ET.SubElement(task, "labels")
    for name in dict.fromkeys(o.label for o in objects):
        label = ET.SubElement(labels, "label")
        ET.SubElement(label, "name").text = name
        ET.SubElement(label, "type").text = "any"
        ET.SubElement(label, "attributes")
    original = ET.SubElement(task, "original_size")
    ET.SubElement(original, "width").text = str(size[1])
    ET.SubElement(original, "height").text = str(size[0])
    for track_id, obj in enumerate(objects):
        track_element = ET.SubElement(root, "track", id=str(track_id), label=obj.label, source="auto")
        last = obj.shape
        for frame in frames:
            shape = shapes[frame][track_id]
            outside = shape is None
            last = last if outside else shape
            tag, attributes = _shape_attributes(last)
            ET.SubElement(
                track_element,
                tag,
                frame=str(frame),
                keyframe="1",
                outside=str(int(outside)),
                occluded="0",
                z_order="0",
                **attributes,
            )
    ET.indent(root)
    path.write_text('<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode"))


def write_coco(
    path: Path,
    video_name: str,
    frame_name: Callable[[int], str],
    objects: Sequence[TrackedObject],
    shapes: dict[int, list[Any]],
    size: tuple[int, int],
) -> None:
    """COCO instances: an image per tracked frame (named by `frame_name`), an annotation per present
    object with its `track_id` attribute; polygons and rectangles as polygons, masks as RLE."""
    labels = list(dict.fromkeys(o.label for o in objects))
    data: dict[str, Any] = {
        "info": {"description": f"SAM2 tracks of {video_name}"},
        "categories": [{"id": i + 1, "name": name, "supercategory": ""} for i, name in enumerate(labels)],
        "images": [],
        "annotations": [],
    }
    for frame in sorted(shapes):
        data["images"].append(
            {
                "id": frame + 1,
                "file_name": frame_name(frame),
                "height": size[0],
                "width": size[1],
                "frame": frame,
            }
        )
        for track_id, (obj, shape) in enumerate(zip(objects, shapes[frame], strict=True)):
            if shape is None:
                continue
            mask = shape_area_mask(shape["type"], shape["points"], size)
            ys, xs = np.nonzero(mask)
            if not xs.size:
                continue
            if shape["type"] == "polygon":
                segmentation: Any = [list(shape["points"])]
            elif shape["type"] == "rectangle":
                x0, y0, x1, y1 = shape["points"]
                segmentation = [[x0, y0, x1, y0, x1, y1, x0, y1]]
            else:
                segmentation = mask_to_coco_rle(mask)
            data["annotations"].append(
                {
                    "id": len(data["annotations"]) + 1,
                    "image_id": frame + 1,
                    "category_id": labels.index(obj.label) + 1,
                    "segmentation": segmentation,
                    "area": int(mask.sum()),
                    "iscrowd": int(isinstance(segmentation, dict)),
                    "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs) + 1), int(np.ptp(ys) + 1)],
                    "attributes": {"track_id": track_id, "keyframe": True, "occluded": False},
                }
            )
    path.write_text(json.dumps(data))
