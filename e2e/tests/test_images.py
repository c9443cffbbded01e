"""What CVAT forwards of an image task's files, against our reading of it (docs/design.md, "Images CVAT
forwards"): a file as it was uploaded, except one with an EXIF orientation, which CVAT re-saves with the
orientation applied; the function starts objects on each, in the picture the annotator sees."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from e2e.client import call_tracker, create_task, init_tracking, served_frame

ORIENTATION = 0x0112  # the EXIF tag


def test_cvat_forwards_image_files_as_uploaded_but_turns_an_exif_orientation(stack, owner, scene, tmp_path):
    picture = scene.frames[0]  # 240 x 320
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # shown turned 90 degrees clockwise: 320 x 240
    turned_jpeg = tmp_path / "a_camera.jpg"
    Image.fromarray(picture).save(turned_jpeg, quality=90, exif=exif)
    gray16_png = tmp_path / "b_scan.png"
    Image.fromarray(picture[..., 1].astype(np.uint16) * 257).save(gray16_png)
    plain_png = tmp_path / "c_plain.png"
    Image.fromarray(picture).save(plain_png)

    with owner.client(stack.url) as client:
        job = create_task(client, "image files", [turned_jpeg, gray16_png, plain_png])
        served = [served_frame(client, job, frame) for frame in range(job.frames)]
        box = {"type": "rectangle", "points": [20, 20, 120, 100]}
        answers = [call_tracker(client, init_tracking(job, frame, [box])) for frame in range(job.frames)]

    turned = Image.open(io.BytesIO(served[0]))
    assert served[0] != turned_jpeg.read_bytes()
    assert turned.getexif().get(ORIENTATION, 1) == 1
    assert turned.size == (240, 320)  # width x height as the annotator sees it
    assert served[1] == gray16_png.read_bytes()
    assert Image.open(io.BytesIO(served[1])).mode == "I;16"
    assert served[2] == plain_png.read_bytes()
    assert [answer.status for answer in answers] == [200, 200, 200]
