"""The image of a request: the file CVAT forwards, decoded to the RGB picture the annotator sees.

For image tasks CVAT forwards the uploaded file's bytes as they are (re-encoded with the EXIF
orientation applied when the file has one, and for TIFF files); for video tasks, an 8-bit PNG of the
frame. The annotator sees neither: CVAT's UI draws the "compressed" chunk, a JPEG that CVAT makes from
the same file (cvat/apps/engine/media_extractors.py, `IChunkWriter._compress_image`). `to_rgb` gives
the tracker that picture, before its JPEG compression:

- the EXIF orientation applied (`ImageOps.exif_transpose`), so the picture and the annotation
  coordinates have the annotator's orientation;
- 16-bit grayscale (I;16, I;16B, I;16L, I;16N: 16-bit PNG and TIFF) stretched from the image's own
  minimum and maximum to 0..255, then histogram-equalized, as CVAT shows it;
- 32-bit integer grayscale (I: 32-bit TIFF, 16-bit PGM) scaled by 256 / the image's maximum, and
  clipped to 0..255, as CVAT shows it;
- every other mode through Pillow's conversion to RGB, as CVAT does: alpha is dropped, keeping the
  colour values (CVAT's JPEG has no alpha, so the canvas never shows transparency), palettes give
  their colours, CMYK, YCbCr and LAB Pillow's conversions, F is clipped to 0..255, bilevel is 0 or
  255; 16 bits per channel RGB(A) and LA are already 8-bit here (Pillow keeps the high byte);
- multi-frame files (GIF, APNG, multi-page TIFF, MPO, animated WebP): the first frame, the one CVAT
  shows.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from config import Limits

# Formats a CVAT frame can arrive in (the uploaded file for image tasks, PNG for video frames).
# Pillow's other plugins are not offered to untrusted bytes.
Image.init()
IMAGE_FORMATS = tuple(
    f for f in ("JPEG", "PNG", "MPO", "BMP", "TIFF", "WEBP", "GIF", "PPM") if f in Image.OPEN
)

GRAY_16_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


class ImageError(ValueError):
    """An image the tracker cannot use, with the sentence saying why; `retry` when it is not the
    image's fault (the worker ran short of memory decoding it)."""

    def __init__(self, message: str, retry: bool = False):
        super().__init__(message)
        self.retry = retry


@dataclass(frozen=True)
class DecodedImage:
    picture: Image.Image  # 8-bit RGB, what the annotator sees
    format: str  # of the file, e.g. "PNG"
    mode: str  # of the file, e.g. "I;16"

    def describe(self) -> str:
        """For the log line, e.g. "640x480 PNG I;16"."""
        return f"{self.picture.width}x{self.picture.height} {self.format} {self.mode}"


def decode_image(data: bytes, limits: Limits) -> DecodedImage:
    """The RGB picture the annotator sees (see the module docstring), refusing files that are not
    images or that declare too many pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Pillow on corrupt metadata, which it skips
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
            width, height = image.size
            if width * height > limits.max_image_pixels:
                raise ImageError(
                    f"the image is {width}x{height} ({width * height} pixels); the limit is "
                    f"{limits.max_image_pixels} pixels (SAM2_MAX_IMAGE_PIXELS)"
                )
            if width < 1 or height < 1:
                raise ImageError(f"the image is {width}x{height}: it has no pixels")
            image.load()  # the first frame of a multi-frame file
            file_format, file_mode = str(image.format), image.mode
            return DecodedImage(to_rgb(image), file_format, file_mode)
    except ImageError:
        raise
    except MemoryError:
        # the worker is short of memory: not the user's fault, and worth a retry
        raise ImageError(
            "the function ran out of memory decoding the image: try again, or give the function more memory",
            retry=True,
        ) from None
    except (
        OSError,
        SyntaxError,
        ValueError,
        TypeError,
        EOFError,
        struct.error,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as error:
        raise ImageError(f"image could not be decoded: send a JPEG or PNG file ({error})") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """An opened image (its first frame) as the 8-bit RGB picture CVAT shows the annotator.

    May transpose `image` in place (EXIF orientation)."""
    ImageOps.exif_transpose(image, in_place=True)
    if image.mode in GRAY_16_BIT:
        return _gray_16_bit(np.asarray(image)).convert("RGB")
    if image.mode == "I":
        return _gray_32_bit(np.asarray(image)).convert("RGB")
    if image.mode == "RGB":
        return image
    if image.mode == "La":  # gray with premultiplied alpha (TIFF): Pillow converts it to LA only
        image = image.convert("LA")
    return image.convert("RGB")


def _gray_16_bit(values: np.ndarray) -> Image.Image:
    """Stretched from the minimum and maximum to 0..255 (rounded down), then equalized."""
    low, high = int(values.min()), int(values.max())
    if high == low:
        return Image.new("L", (values.shape[1], values.shape[0]), 0)
    levels = np.arange(1 << 16, dtype=np.int64)
    table = (np.clip(levels - low, 0, high - low) * 255 // (high - low)).astype(np.uint8)
    stretched = Image.fromarray(table[values.astype(np.uint16, copy=False)])
    return ImageOps.equalize(stretched)


def _gray_32_bit(values: np.ndarray) -> Image.Image:
    """Scaled by 256 / the maximum (rounded down), then clipped to 0..255."""
    high = int(values.max())
    if high <= 0:
        return Image.new("L", (values.shape[1], values.shape[0]), 0)
    scaled = values.astype(np.int64)
    scaled *= 256
    scaled //= high
    return Image.fromarray(np.clip(scaled, 0, 255, out=scaled).astype(np.uint8))
