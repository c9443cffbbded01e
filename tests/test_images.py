"""Every image CVAT forwards decodes to the 8-bit RGB picture the annotator sees (images.py), and the
function tracks on that picture: a file in any mode gets the same answers as the RGB PNG of its picture.

The expected pictures are written here from what CVAT shows (see images.py and the README, "Images CVAT
forwards"), with numpy, not with the code under test.
"""

from __future__ import annotations

import io
import json

import cv2
import nuclio_sdk
import numpy as np
import pytest
from PIL import Image, ImageOps

import images
import main
from config import Limits
from tests.support.cvat import continue_body, function_instance, start_body
from tests.support.synthetic import moving_objects_scene

LIMITS = Limits()
ORIENTATION = 0x0112  # the EXIF tag

# The picture shown for a stored picture, per EXIF orientation (the EXIF specification's table).
DISPLAYED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def opened_mode(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as image:
        return image.mode


def decode(data: bytes) -> np.ndarray:
    """The decoded picture, after checking that it is 8-bit RGB."""
    image = images.decode_image(data, LIMITS).picture
    assert image.mode == "RGB"
    picture = np.asarray(image)
    assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
    return picture


def gray(values: np.ndarray) -> np.ndarray:
    return np.repeat(values[..., None], 3, axis=2)


def cvat_16_bit_picture(values: np.ndarray) -> np.ndarray:
    """What CVAT shows for 16-bit grayscale: stretched from the minimum and maximum to 0..255, rounded
    down, then histogram-equalized (Pillow's ImageOps.equalize, which CVAT calls)."""
    shifted = values.astype(np.float64) - values.min()
    stretched = np.floor(shifted / shifted.max() * 255).astype(np.uint8)
    return gray(np.asarray(ImageOps.equalize(Image.fromarray(stretched))))


def uniform_levels(rows: int = 12) -> np.ndarray:
    """Each of the 256 levels `rows` times (one shuffled ramp per row): equalization leaves it as it is."""
    rng = np.random.default_rng(7)
    return np.stack([rng.permutation(256) for _ in range(rows)]).astype(np.uint8)


def sixteen_bit_gray_file(values: np.ndarray, container: str) -> bytes:
    height, width = values.shape
    if container == "TIFF big-endian":
        return encode(Image.frombytes("I;16B", (width, height), values.astype(">u2").tobytes()), "TIFF")
    return encode(Image.fromarray(values.astype(np.uint16)), {"PGM": "PPM"}.get(container, container))


def with_orientation(picture: np.ndarray, orientation: int, fmt: str, **params) -> bytes:
    image = Image.fromarray(picture)
    exif = image.getexif()
    exif[ORIENTATION] = orientation
    return encode(image, fmt, exif=exif, **params)


# ---- 16-bit and 32-bit grayscale: scaled as CVAT shows them, never clipped -----------------------


@pytest.mark.parametrize(
    ("container", "mode"), [("PNG", "I;16"), ("TIFF", "I;16"), ("TIFF big-endian", "I;16B"), ("PGM", "I")]
)
def test_16_bit_gray_of_v_times_257_decodes_to_v(container, mode):
    levels = uniform_levels()
    data = sixteen_bit_gray_file(levels.astype(np.uint16) * 257, container)
    assert opened_mode(data) == mode
    picture = decode(data)
    assert picture.shape == (12, 256, 3)
    np.testing.assert_array_equal(picture, gray(levels))


@pytest.mark.parametrize("container", ["PNG", "TIFF", "TIFF big-endian"])
def test_16_bit_gray_is_stretched_and_equalized_as_cvat_shows_it(container):
    rng = np.random.default_rng(1)
    values = (rng.random((48, 64)) ** 2 * 3000 + 500).astype(np.uint16)  # 12-bit camera data, skewed
    picture = decode(sixteen_bit_gray_file(values, container))
    np.testing.assert_array_equal(picture, cvat_16_bit_picture(values))
    assert picture.min() == 0 and picture.max() == 255
    assert (picture == 255).mean() < 0.05
    # what the function did before: Pillow's own conversion clips nearly every pixel to white
    assert (np.asarray(Image.fromarray(values).convert("RGB")) == 255).mean() > 0.95


def test_32_bit_gray_is_scaled_by_its_maximum_and_clipped():
    rng = np.random.default_rng(2)
    values = rng.integers(-1000, 1 << 20, size=(30, 40), dtype=np.int32)
    data = encode(Image.fromarray(values), "TIFF")
    assert opened_mode(data) == "I"
    expected = np.clip(np.floor(values * 256.0 / values.max()), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(decode(data), gray(expected))


def test_flat_16_and_32_bit_gray_are_black():
    assert not decode(sixteen_bit_gray_file(np.full((5, 7), 40000, np.uint16), "PNG")).any()
    assert not decode(encode(Image.fromarray(np.full((5, 7), -3, np.int32)), "TIFF")).any()


@pytest.mark.parametrize("fmt", ["TIFF", "PPM"])  # PPM writes F as PFM
def test_float_gray_is_clipped_to_0_255(fmt):
    values = np.array([[-5.0, 0.0, 7.0], [128.0, 255.0, 300.0]], np.float32)
    data = encode(Image.fromarray(values), fmt)
    assert opened_mode(data) == "F"
    np.testing.assert_array_equal(decode(data), gray(np.array([[0, 0, 7], [128, 255, 255]], np.uint8)))


# ---- modes Pillow converts, as CVAT does ----------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "BMP"])
def test_bilevel_is_black_and_white(fmt):
    bits = np.random.default_rng(3).random((9, 14)) > 0.5
    data = encode(Image.fromarray(bits), fmt)
    assert opened_mode(data) == "1"
    np.testing.assert_array_equal(decode(data), gray(bits.astype(np.uint8) * 255))


@pytest.mark.parametrize(("fmt", "params"), [("PNG", {}), ("TIFF", {}), ("WEBP", {"lossless": True})])
def test_8_bit_gray_is_repeated_in_three_channels(fmt, params):
    values = np.random.default_rng(4).integers(0, 256, (10, 16), dtype=np.uint8)
    picture = decode(encode(Image.fromarray(values), fmt, **params))
    np.testing.assert_array_equal(picture, gray(values))


@pytest.mark.parametrize(
    ("mode", "fmt", "params"),
    [
        ("RGBA", "PNG", {}),
        ("RGBA", "TIFF", {}),
        ("RGBA", "WEBP", {"lossless": True, "exact": True}),
        ("LA", "PNG", {}),
        ("LA", "TIFF", {}),
    ],
)
def test_alpha_is_dropped_keeping_the_colours(mode, fmt, params):
    rng = np.random.default_rng(5)
    channels = rng.integers(0, 256, (10, 16, len(mode)), dtype=np.uint8)
    channels[:3, :, -1] = 0  # fully transparent rows keep their colours too
    data = encode(Image.fromarray(channels, mode), fmt, **params)
    assert opened_mode(data) == mode
    colours = channels[..., :3] if mode == "RGBA" else gray(channels[..., 0])
    np.testing.assert_array_equal(decode(data), colours)


def test_gray_with_premultiplied_alpha_is_unpremultiplied():
    """A TIFF whose alpha is premultiplied (ExtraSamples 1) opens as La, which Pillow converts to LA
    only (CVAT cannot compress it); Pillow opens the RGB one as RGBA, unpremultiplied, likewise."""
    rng = np.random.default_rng(6)
    straight = rng.integers(0, 256, (8, 12), dtype=np.uint8)
    alpha = np.where(np.arange(12) < 6, 255, 128).astype(np.uint8) * np.ones((8, 1), np.uint8)
    premultiplied = np.round(straight * (alpha / 255.0)).astype(np.uint8)
    data = encode(Image.fromarray(np.stack([premultiplied, alpha], axis=-1), "LA"), "TIFF")
    unassociated = bytes.fromhex("5201 0300 0100 0000 0200 0000")  # ExtraSamples: 1 value, 2
    assert data.count(unassociated) == 1
    data = data.replace(unassociated, bytes.fromhex("5201 0300 0100 0000 0100 0000"))
    assert opened_mode(data) == "La"
    picture = decode(data)[..., 0].astype(int)
    opaque = alpha == 255
    np.testing.assert_array_equal(picture[opaque], straight[opaque])
    assert np.abs(picture[~opaque] - straight[~opaque]).max() <= 2


@pytest.mark.parametrize(("fmt", "mode"), [("PNG", "P"), ("GIF", "P"), ("BMP", "P"), ("TIFF", "PA")])
def test_palette_gives_its_colours_whatever_the_transparency(fmt, mode):
    rng = np.random.default_rng(8)
    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    indices = rng.integers(0, 256, (10, 16), dtype=np.uint8)
    if mode == "PA":
        image = Image.fromarray(np.stack([indices, rng.integers(0, 256, (10, 16), dtype=np.uint8)], -1), "LA")
        image = Image.frombytes("PA", image.size, image.tobytes())
    else:
        image = Image.fromarray(indices).convert("P")
    image.putpalette(palette.tobytes())
    params = {"transparency": int(indices[0, 0])} if fmt in ("PNG", "GIF") else {}
    data = encode(image, fmt, **params)
    assert opened_mode(data) == mode
    np.testing.assert_array_equal(decode(data), palette[indices])


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_is_converted_as_pillow_and_cvat_do(fmt):
    rng = np.random.default_rng(9)
    cmyk = cv2.GaussianBlur(rng.integers(0, 256, (24, 32, 4), dtype=np.uint8), (0, 0), 2)
    data = encode(Image.fromarray(cmyk, "CMYK"), fmt)
    assert opened_mode(data) == "CMYK"
    with Image.open(io.BytesIO(data)) as stored:  # the decoded CMYK (JPEG is lossy)
        ink = np.asarray(stored).astype(np.float64)
    expected = (255 - ink[..., :3]) * (255 - ink[..., 3:]) / 255  # no ICC profile, as CVAT
    assert np.abs(decode(data) - expected).max() <= 1


def test_ycbcr_tiff_is_converted_to_rgb():
    rng = np.random.default_rng(10)
    ycc = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    data = encode(Image.fromarray(ycc, "YCbCr"), "TIFF")
    assert opened_mode(data) == "YCbCr"
    y, cb, cr = (ycc[..., i].astype(np.float64) - offset for i, offset in enumerate((0, 128, 128)))
    expected = np.clip(
        np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], -1), 0, 255
    )
    assert np.abs(decode(data) - expected).max() <= 1


def test_lab_tiff_decodes_to_rgb():
    data = encode(Image.new("LAB", (7, 5), (50, 0, 0)), "TIFF")
    assert opened_mode(data) == "LAB"
    assert decode(data).shape == (5, 7, 3)


@pytest.mark.parametrize(("channels", "fmt"), [(3, ".png"), (4, ".png"), (3, ".tiff")])
def test_16_bits_per_channel_colour_keeps_the_high_byte(channels, fmt):
    rng = np.random.default_rng(11)
    levels = rng.integers(0, 256, (10, 16, channels), dtype=np.uint8)
    low_bytes = rng.integers(0, 256, levels.shape, dtype=np.uint16)
    order = [2, 1, 0, 3][:channels]  # OpenCV writes BGR(A)
    ok, data = cv2.imencode(fmt, (levels.astype(np.uint16) * 256 + low_bytes)[..., order])
    assert ok
    np.testing.assert_array_equal(decode(data.tobytes()), levels[..., :3])


# ---- multi-frame files: the first frame, the one CVAT shows ---------------------------------------


@pytest.mark.parametrize(
    ("fmt", "params"),
    [
        ("GIF", {}),
        ("PNG", {}),
        ("TIFF", {}),
        ("WEBP", {"lossless": True}),
        ("MPO", {"quality": 95}),
    ],
)
def test_multi_frame_files_decode_to_their_first_frame(fmt, params):
    ramp = np.add.outer(np.arange(24), np.arange(32)).astype(np.uint8)
    frames = [
        np.stack([ramp * 2, ramp, 255 - ramp * 3], -1),
        np.full((24, 32, 3), 250, np.uint8),
        np.full((24, 32, 3), 5, np.uint8),
    ]
    if fmt == "GIF":
        frames = [f[..., 0] for f in frames]  # gray: 256 levels fit the GIF palette exactly
    first, *others = [Image.fromarray(f) for f in frames]
    data = encode(first, fmt, save_all=True, append_images=others, **params)
    with Image.open(io.BytesIO(data)) as image:
        assert getattr(image, "n_frames", 1) == 3
    expected = frames[0] if fmt != "GIF" else gray(frames[0])
    picture = decode(data)
    if fmt == "MPO":  # JPEG frames
        assert np.abs(picture.astype(int) - expected).mean() < 2
    else:
        np.testing.assert_array_equal(picture, expected)


# ---- EXIF orientation: honoured, as CVAT shows the picture ---------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation):
    stored = np.random.default_rng(12).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    picture = decode(with_orientation(stored, orientation, "PNG"))
    np.testing.assert_array_equal(picture, DISPLAYED[orientation](stored))
    assert picture.shape == ((30, 20, 3) if orientation >= 5 else (20, 30, 3))


@pytest.mark.parametrize(
    ("fmt", "params"), [("JPEG", {"quality": 95}), ("TIFF", {}), ("WEBP", {"lossless": True})]
)
def test_exif_orientation_is_applied_in_other_formats(fmt, params):
    ramp = np.add.outer(np.arange(40), np.arange(60) * 2).astype(np.uint8)
    stored = np.stack([ramp, 255 - ramp, ramp // 2], -1)
    data = with_orientation(stored, 6, fmt, **params)
    if fmt == "JPEG":  # lossy: the same JPEG decoded as stored
        stored = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    picture = decode(data)
    assert picture.shape == (60, 40, 3)
    np.testing.assert_array_equal(picture, np.rot90(stored, -1))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_file_cvat_already_turned_is_not_turned_again(fmt):
    """CVAT forwards a file with an EXIF orientation re-saved with the orientation applied (its
    original chunk): the same picture as the raw file."""
    ramp = np.add.outer(np.arange(40), np.arange(60) * 2).astype(np.uint8)
    raw = with_orientation(np.stack([ramp, 255 - ramp, ramp // 2], -1), 8, fmt)
    with Image.open(io.BytesIO(raw)) as image:
        turned = ImageOps.exif_transpose(image)
    forwarded = encode(turned, fmt, **({"quality": 100, "subsampling": 0} if fmt == "JPEG" else {}))
    assert decode(raw).shape == decode(forwarded).shape == (60, 40, 3)
    assert np.abs(decode(raw).astype(int) - decode(forwarded)).max() <= (3 if fmt == "JPEG" else 0)


# ---- the checks before decoding ------------------------------------------------------------------


def test_too_many_pixels_and_undecodable_files_are_400():
    for data in (encode(Image.new("RGB", (20, 10)), "PNG"), sixteen_bit_gray_file(np.ones((10, 20)), "PNG")):
        with pytest.raises(images.ImageError) as error:
            images.decode_image(data, Limits(max_image_pixels=199))
        assert not error.value.retry and "200 pixels" in str(error.value)
    noise = encode(Image.fromarray(np.random.default_rng(14).integers(0, 256, (20, 30, 3), np.uint8)), "PNG")
    for data in (b"not an image", encode(Image.new("RGB", (16, 16)), "ICO"), noise[: len(noise) // 2]):
        with pytest.raises(images.ImageError) as error:
            images.decode_image(data, LIMITS)
        assert not error.value.retry and "could not be decoded" in str(error.value)


# ---- through the handler: each mode tracks like the RGB PNG of its picture -----------------------


@pytest.fixture(scope="module")
def function(checkpoint):
    return function_instance(checkpoint)


def call(platform, body) -> dict:
    response = platform.call_handler(main.handler, nuclio_sdk.Event(body=body))
    answer = json.loads(response.body)
    assert response.status_code == 200, answer
    return answer


def track(platform, files: list[bytes], shapes: list[dict]) -> list[list]:
    """Start on the first file and continue on the others; the shapes of each continue call."""
    states = call(platform, start_body(files[0], shapes))["states"]
    answers = []
    for data in files[1:]:
        answer = call(platform, continue_body(data, states))
        answers.append(answer["shapes"])
        states = answer["states"]
    return answers


def frame_files(pictures: list[np.ndarray], gray_levels: np.ndarray) -> list[tuple[str, str, bytes]]:
    """One file per frame, each in another mode, whose picture is `pictures[i]` (gray, in 3 channels);
    the first holds `gray_levels` in 16 bits. Each as (name, the mode Pillow opens it in, bytes)."""
    rng = np.random.default_rng(13)
    levels = [p[..., 0] for p in pictures]
    height, width = levels[0].shape
    alpha = rng.integers(0, 256, (height, width), dtype=np.uint8)
    ink = 255 - levels[2]
    stored = np.ascontiguousarray(np.rot90(levels[3], 1))  # orientation 6 turns it back
    permutation = rng.permutation(256)  # palette index -> level, so the palette must be applied
    index_of = np.argsort(permutation).astype(np.uint8)
    frames = [
        Image.frombytes("P", (width, height), index_of[values].tobytes())
        for values in (levels[4], 255 - levels[4], levels[4] // 2)
    ]
    for frame in frames:
        frame.putpalette(np.repeat(permutation, 3).astype(np.uint8).tobytes())
    return [
        ("16-bit grayscale PNG", "I;16", sixteen_bit_gray_file(gray_levels.astype(np.uint16) * 257, "PNG")),
        ("RGBA PNG", "RGBA", encode(Image.fromarray(np.dstack([pictures[1], alpha]), "RGBA"), "PNG")),
        ("CMYK TIFF", "CMYK", encode(Image.fromarray(np.dstack([ink, ink, ink, 0 * ink]), "CMYK"), "TIFF")),
        ("PNG with EXIF orientation 6", "L", with_orientation(stored, 6, "PNG")),
        (
            "3-frame palette GIF with transparency",
            "P",
            encode(frames[0], "GIF", save_all=True, append_images=frames[1:], transparency=int(index_of[0])),
        ),
    ]


def test_every_mode_tracks_like_the_rgb_png_of_its_picture(function):
    """The issue's acceptance test: a session whose frames come in five modes answers exactly as the
    session of their 8-bit RGB pictures, sent as RGB PNGs."""
    from cvat_sdk.masks import encode_mask

    scene = moving_objects_scene(5, seed=5)
    full_range = []
    for frame in scene.frames:
        luminance = np.asarray(Image.fromarray(frame).convert("L")).astype(np.int64)
        low, high = luminance.min(), luminance.max()
        full_range.append(((luminance - low) * 255 // (high - low)).astype(np.uint8))
    # the 16-bit frame shows its levels equalized; the others are made to show the same kind of picture
    pictures = [gray(np.asarray(ImageOps.equalize(Image.fromarray(levels)))) for levels in full_range]
    files = frame_files(pictures, full_range[0])
    for (name, mode, data), picture in zip(files, pictures, strict=True):
        assert opened_mode(data) == mode, name
        np.testing.assert_array_equal(decode(data), picture, err_msg=name)

    shapes = [{"type": "mask", "points": encode_mask(scene.masks[0][0])}]
    expected = track(function, [encode(Image.fromarray(p), "PNG") for p in pictures], shapes)
    assert all(answer[0] is not None and answer[0]["type"] == "mask" for answer in expected)
    assert len({json.dumps(answer) for answer in expected}) == len(expected)  # the masks follow the frames

    answers = track(function, [data for _, _, data in files], shapes)
    for (name, _, _), want, got in zip(files[1:], expected, answers, strict=True):
        assert got == want, f"{name}: not the answer for the RGB PNG of its picture"
