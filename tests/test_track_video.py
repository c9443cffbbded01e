"""The offline CLI end to end on generated videos: inputs from every supported format, both
directions, in process and against the local server; outputs read back with real parsers."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

import track_video
from annotation_files import AnnotationError, coco_rle_to_mask, mask_to_coco_rle
from config import TrackerConfig
from model_handler import Sam2Tracker
from shape_codecs import mask_to_polygon, mask_to_rle, rle_to_mask
from tests.support.cvat import function_env, function_environment
from tests.support.models import track_frames
from tests.support.synthetic import moving_objects_scene

FRAMES = 5


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    scene = moving_objects_scene(FRAMES, seed=11)
    folder = tmp_path_factory.mktemp("frames")
    for index, frame in enumerate(scene.frames):
        Image.fromarray(frame).save(folder / f"img{index}.png")  # natural order: img2 before img10
    mp4 = folder.parent / "video.mp4"
    height, width = scene.size
    writer = cv2.VideoWriter(str(mp4), cv2.VideoWriter_fourcc(*"mp4v"), 5, (width, height))
    for frame in scene.frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return scene, folder, mp4


@pytest.fixture(scope="module")
def sam2_env(checkpoint):
    with function_environment(checkpoint):
        yield


def test_backward_from_mask_pngs_to_cvat_xml_and_coco(sam2_env, checkpoint, video, tmp_path):
    scene, folder, _ = video
    start, target = FRAMES - 1, 0
    labels = np.zeros(scene.size, np.uint8)
    labels[scene.masks[start][0]] = 1
    labels[scene.masks[start][1]] = 2
    Image.fromarray(labels).save(tmp_path / "objects.png")
    args = [
        "--start",
        str(start),
        "--target",
        str(target),
        "--mask",
        str(tmp_path / "objects.png"),
        "--xml",
        str(tmp_path / "out.xml"),
        "--coco-out",
        str(tmp_path / "out.json"),
        "--overlay",
        str(tmp_path / "out.gif"),
        "--quiet",
    ]
    assert track_video.main([str(folder), *args]) == 0

    # The tracker core called directly, configured like the CLI's in-process function: per frame from
    # the start frame backward, the masks of the two objects.
    tracker = Sam2Tracker.from_config(TrackerConfig.from_env(function_env(checkpoint)))
    expected = [
        [t.result.mask for t in tracked]
        for tracked in track_frames(tracker, scene.frames[::-1], [labels == 1, labels == 2])
    ]
    root = ET.parse(tmp_path / "out.xml").getroot()
    assert root.findtext("version") == "1.1"
    assert root.findtext("meta/task/mode") == "interpolation"
    assert (root.findtext("meta/task/start_frame"), root.findtext("meta/task/stop_frame")) == ("0", "4")
    tracks = root.findall("track")
    assert [t.get("label") for t in tracks] == ["objects-1", "objects-2"]
    height, width = scene.size
    for track_id, track in enumerate(tracks):
        shapes = track.findall("mask")
        assert [int(s.get("frame")) for s in shapes] == list(range(FRAMES))
        for shape in shapes:
            frame = int(shape.get("frame"))
            left, top = int(shape.get("left")), int(shape.get("top"))
            w, h = int(shape.get("width")), int(shape.get("height"))
            runs = [int(v) for v in shape.get("rle").split(",")]
            mask = rle_to_mask([*runs, left, top, left + w - 1, top + h - 1], (height, width))
            wanted = labels == track_id + 1 if frame == start else expected[start - frame][track_id]
            np.testing.assert_array_equal(mask, wanted)
            assert shape.get("outside") == "0" and shape.get("keyframe") == "1"

    coco = json.loads((tmp_path / "out.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["objects-1", "objects-2"]
    assert [i["file_name"] for i in coco["images"]] == [f"img{i}.png" for i in range(FRAMES)]
    for annotation in coco["annotations"]:
        frame = annotation["image_id"] - 1
        track_id = annotation["attributes"]["track_id"]
        rle = coco_mask.frPyObjects(annotation["segmentation"], height, width)
        decoded = coco_mask.decode(rle).astype(bool)
        wanted = labels == track_id + 1 if frame == start else expected[start - frame][track_id]
        np.testing.assert_array_equal(decoded, wanted)
        assert annotation["area"] == int(wanted.sum())
    assert len(coco["annotations"]) == 2 * FRAMES

    gif = Image.open(tmp_path / "out.gif")
    assert gif.n_frames == FRAMES and gif.size == (width, height)


def test_forward_from_cvat_xml_and_coco_exports_in_process_and_remote(sam2_env, video, tmp_path):
    scene, folder, _ = video
    mask = scene.masks[1][0]
    points = mask_to_rle(mask)
    *runs, left, top, right, bottom = points
    polygon = mask_to_polygon(scene.masks[1][1])
    cvat_xml = tmp_path / "task.xml"
    pairs = ";".join(f"{x},{y}" for x, y in zip(polygon[0::2], polygon[1::2], strict=True))
    cvat_xml.write_text(
        "<annotations><version>1.1</version>"
        '<image id="1" name="img1.png" width="320" height="240">'
        f'<mask label="car" rle="{", ".join(map(str, runs))}" left="{left}" top="{top}" '
        f'width="{right - left + 1}" height="{bottom - top + 1}"/>'
        f'<polygon label="person" points="{pairs}"/></image></annotations>'
    )
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    coco = {
        "images": [{"id": 7, "file_name": "frames/img1.png", "width": 320, "height": 240}],
        "categories": [{"id": 3, "name": "car"}, {"id": 4, "name": "person"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 7,
                "category_id": 3,
                "bbox": [0, 0, 1, 1],
                "iscrowd": 1,
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
            },
            {
                "id": 2,
                "image_id": 7,
                "category_id": 4,
                "bbox": [0, 0, 1, 1],
                "iscrowd": 0,
                "segmentation": [polygon],
            },
        ],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))

    base = [str(folder), "--start", "1", "--target", "3", "--quiet"]
    from_xml = track_video.run(track_video.parse_args([*base, "--cvat-xml", str(cvat_xml)]))
    from_coco = track_video.run(track_video.parse_args([*base, "--coco", str(tmp_path / "coco.json")]))
    assert from_xml == from_coco
    assert sorted(from_xml) == [1, 2, 3]
    assert [s["type"] for s in from_xml[3]] == ["mask", "polygon"]


def test_remote_run_equals_in_process(sam2_env, video, server_url, tmp_path):
    _, _, mp4 = video
    box = "40,30,200,150"
    args = [str(mp4), "--start", "0", "--target", "2", "--box", box, "--quiet"]
    outputs = ["--coco-out", str(tmp_path / "boxes.json"), "--overlay", str(tmp_path / "boxes.gif")]
    here = track_video.run(track_video.parse_args([*args, *outputs]))
    there = track_video.run(track_video.parse_args([*args, "--url", server_url]))
    assert here == there
    assert here[0] == [{"type": "rectangle", "points": [40.0, 30.0, 200.0, 150.0]}]
    assert all(len(s["points"]) == 4 for s in here[2])

    coco = json.loads((tmp_path / "boxes.json").read_text())
    assert len(coco["annotations"]) == 3
    for annotation in coco["annotations"]:  # rectangles: their pixels' box and area
        x0, y0, x1, y1 = here[annotation["image_id"] - 1][0]["points"]
        assert annotation["bbox"] == [x0, y0, x1 - x0, y1 - y0]
        assert annotation["area"] == (x1 - x0) * (y1 - y0)
        assert annotation["segmentation"] == [[x0, y0, x1, y0, x1, y1, x0, y1]]
    assert Image.open(tmp_path / "boxes.gif").n_frames == 3


def test_video_frames_come_in_either_direction(video, monkeypatch):
    _, folder, mp4 = video
    monkeypatch.setattr(track_video, "REVERSE_BLOCK", 2)  # several blocks on a 5-frame video
    for path in (mp4, folder):
        source = track_video.FrameSource(path)
        assert source.count == FRAMES
        forward = list(source.frames(0, FRAMES - 1))
        backward = list(source.frames(FRAMES - 1, 0))
        assert [i for i, _ in backward] == list(range(FRAMES - 1, -1, -1))
        for (i, a), (j, b) in zip(forward, reversed(backward), strict=True):
            assert i == j
            np.testing.assert_array_equal(a, b)
        assert [i for i, _ in source.frames(3, 1)] == [3, 2, 1]


def test_coco_rle_reads_back_what_pycocotools_encodes():
    rng = np.random.default_rng(0)
    masks = [rng.random((37, 23)) > rng.random() for _ in range(20)]
    masks += [np.zeros((37, 23), bool), np.ones((37, 23), bool)]
    for mask in masks:
        encoded = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        compressed = {"size": encoded["size"], "counts": encoded["counts"].decode()}
        np.testing.assert_array_equal(coco_rle_to_mask(compressed), mask)
        ours = mask_to_coco_rle(mask)  # uncompressed: list counts
        np.testing.assert_array_equal(coco_rle_to_mask(ours), mask)
        back = coco_mask.decode(coco_mask.frPyObjects(ours, *mask.shape)).astype(bool)
        np.testing.assert_array_equal(back, mask)


def test_coco_rle_that_does_not_fill_its_size_is_refused():
    mask = np.zeros((37, 23), bool)
    mask[5:9, 3:20] = True
    for smaller in (mask[:-1], mask[:, :-1]):  # counts of a smaller mask: pycocotools leaves pixels unset
        encoded = coco_mask.encode(np.asfortranarray(smaller.astype(np.uint8)))
        with pytest.raises(AnnotationError, match="fewer pixels than its size 37x23"):
            coco_rle_to_mask({"size": [37, 23], "counts": encoded["counts"].decode()})
        with pytest.raises(AnnotationError, match=f"add up to {smaller.size} pixels"):
            coco_rle_to_mask({"size": [37, 23], "counts": mask_to_coco_rle(smaller)["counts"]})
    longer = coco_mask.encode(np.asfortranarray(np.ones((38, 23), np.uint8)))["counts"].decode()
    with pytest.raises(AnnotationError, match="more pixels"):
        coco_rle_to_mask({"size": [37, 23], "counts": longer})
    for rle, message in [
        ({"size": [37, 23], "counts": [1, -1, 851]}, "not negative"),
        ({"size": [37, 23], "counts": None}, "list of numbers or a compressed string"),
        ({"counts": [851]}, '"size": \\[height, width\\]'),
    ]:
        with pytest.raises(AnnotationError, match=message):
            coco_rle_to_mask(rle)


def test_bad_annotation_files_are_one_line_errors(video, tmp_path, capsys):
    _, folder, _ = video
    short = {"size": [240, 320], "counts": [240 * 320 - 1]}
    coco = {
        "images": [{"id": 1, "file_name": "img0.png", "width": 320, "height": 240}],
        "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "segmentation": short}],
    }
    (tmp_path / "short.json").write_text(json.dumps(coco))
    coco["images"][0]["file_name"] = "other.png"
    (tmp_path / "other.json").write_text(json.dumps(coco))
    (tmp_path / "broken.xml").write_text("<annotations><image id='0'>")
    (tmp_path / "box.xml").write_text(
        "<annotations><image id='0' name='img0.png'><box label='a' xtl='1'/></image></annotations>"
    )
    for flag, name, message in [
        ("--coco", "short.json", "short.json: annotation 5: a COCO RLE's counts add up to 76799 pixels"),
        ("--coco", "other.json", "other.json has no image named img0.png (it has e.g. other.png)"),
        ("--coco", "missing.json", "missing.json cannot be read as COCO JSON"),
        ("--cvat-xml", "broken.xml", "broken.xml cannot be read as CVAT XML"),
        ("--cvat-xml", "box.xml", "box.xml: a <box> on frame 0 has missing or non-numeric coordinates"),
    ]:
        args = [str(folder), "--start", "0", "--target", "1", flag, str(tmp_path / name), "--quiet"]
        assert track_video.main(args) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and err.startswith("error: ")


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--start", "9", "--target", "0", "--box", "1,1,5,5"],
            "--start 9 is outside the video's frames 0..4",
        ),
        (["--start", "0", "--target", "2"], "no objects on the start frame 0"),
        (["--start", "0", "--target", "2", "--box", "1,2,3"], "expected 4 numbers"),
        (["--start", "0", "--target", "2", "--polygon", "1,2,x"], "comma-separated numbers"),
        (["--start", "0", "--target", "2", "--polygon", "1,1,2,1"], "a polygon needs at least 3 points"),
    ],
)
def test_user_errors_are_one_line(sam2_env, video, capsys, extra, message):
    _, folder, _ = video
    assert track_video.main([str(folder), *extra, "--quiet"]) == 1
    assert message in capsys.readouterr().err


@pytest.fixture(scope="module")
def cut_video(tmp_path_factory):
    """An MJPEG AVI of 12 frames cut short (its index at the end is gone): the header still promises
    12 frames, OpenCV opens it and decodes the first few."""
    scene = moving_objects_scene(12, seed=5)
    folder = tmp_path_factory.mktemp("cut")
    whole, cut = folder / "whole.avi", folder / "cut.avi"
    height, width = scene.size
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 5, (width, height))
    for frame in scene.frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    capture = cv2.VideoCapture(str(cut))
    promised = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    decodable = 0
    while capture.read()[0]:
        decodable += 1
    capture.release()
    assert promised == 12 and 2 <= decodable < promised
    return cut, decodable


def test_a_video_cut_short_keeps_the_frames_tracked(sam2_env, cut_video, tmp_path, capsys):
    cut, decodable = cut_video
    outputs = {
        "--xml": tmp_path / "t.xml",
        "--coco-out": tmp_path / "t.json",
        "--overlay": tmp_path / "t.gif",
    }
    args = [str(cut), "--start", "0", "--target", "11", "--box", "40,30,200,150", "--quiet"]
    assert track_video.main([*args, *(str(a) for pair in outputs.items() for a in pair)]) == 1
    error = capsys.readouterr().err
    assert f"frame {decodable} cannot be decoded" in error and f"frames 0..{decodable - 1}" in error

    coco = json.loads(outputs["--coco-out"].read_text())
    assert len(coco["images"]) == len(coco["annotations"]) == decodable
    boxes = ET.parse(outputs["--xml"]).getroot().findall("./track/box")
    assert sorted(int(box.get("frame")) for box in boxes if box.get("outside") == "0") == list(
        range(decodable)
    )
    assert Image.open(outputs["--overlay"]).n_frames == decodable


def test_a_start_frame_past_the_end_of_a_cut_video_is_named(sam2_env, cut_video, tmp_path, capsys):
    cut, decodable = cut_video
    coco = tmp_path / "t.json"
    args = [str(cut), "--start", "11", "--target", "0", "--box", "40,30,200,150", "--quiet"]
    assert track_video.main([*args, "--coco-out", str(coco)]) == 1
    error = capsys.readouterr().err
    assert (
        f"frame {decodable} cannot be decoded" in error and "start frame 11 is past the video's end" in error
    )
    assert not coco.exists()
    # backward from the last frame that decodes: the whole way
    args = [str(cut), "--start", str(decodable - 1), "--target", "0", "--box", "40,30,200,150", "--quiet"]
    assert track_video.main([*args, "--coco-out", str(coco)]) == 0
    assert len(json.loads(coco.read_text())["images"]) == decodable


def test_in_process_tracking_encodes_no_image_file(sam2_env, video, monkeypatch):
    """The CLI hands decoded frames to the call path: no PNG or JPEG is written and read again."""
    _, _, mp4 = video

    def refuse(*args, **kwargs):
        raise AssertionError("an image was encoded")

    monkeypatch.setattr(Image.Image, "save", refuse)
    monkeypatch.setattr(cv2, "imencode", refuse)
    shapes = track_video.run(
        track_video.parse_args(
            [str(mp4), "--start", "0", "--target", "2", "--box", "40,30,200,150", "--quiet"]
        )
    )
    assert sorted(shapes) == [0, 1, 2]
