"""Pixels in and out of SAM2 exactly as the official video predictor moves them: frames to the model's
input (`preprocess`), low-resolution mask logits back to the image (`upscale_logits`), and the small
holes the predictor fills with its CUDA extension (`fill_holes`)."""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


def preprocess(image: np.ndarray | Image.Image, image_size: int) -> torch.Tensor:
    """Exactly sam2's ``load_video_frames``: PIL resize (its default filter) to a square, /255,
    ImageNet mean/std. OpenCV's resize would differ by up to 2 grey levels."""
    pil = image if isinstance(image, Image.Image) else Image.fromarray(image)
    resized = np.asarray(pil.convert("RGB").resize((image_size, image_size)))
    tensor = torch.from_numpy(resized / 255.0).permute(2, 0, 1).float()
    mean = torch.tensor(IMAGE_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(IMAGE_STD, dtype=torch.float32)[:, None, None]
    return ((tensor - mean) / std)[None]


def picture_size(picture: np.ndarray | Image.Image) -> tuple[int, int]:
    """(height, width) of an image, as a video size."""
    if isinstance(picture, Image.Image):
        return picture.height, picture.width
    return int(picture.shape[0]), int(picture.shape[1])


def fill_holes(logits: torch.Tensor, max_area: int) -> torch.Tensor:
    """Fill background components (8-connected) of at most `max_area` pixels with a small positive
    score, as sam2's ``fill_holes_in_mask_scores`` does with its CUDA extension."""
    if max_area <= 0:
        return logits
    filled = logits.clone()
    for index in range(logits.shape[0]):
        background = (logits[index, 0] <= 0).to("cpu", torch.uint8).numpy()
        count, labels, stats, _ = cv2.connectedComponentsWithStats(background, connectivity=8)
        small = np.zeros(count, dtype=bool)
        small[1:] = stats[1:, cv2.CC_STAT_AREA] <= max_area
        hole = torch.from_numpy(small[labels]).to(logits.device)
        filled[index, 0] = torch.where(hole, 0.1, logits[index, 0])
    return filled


def upscale_logits(low_res: torch.Tensor, video_size: tuple[int, int]) -> torch.Tensor:
    """Low-resolution logits to the original image size, as the predictor outputs them."""
    return F.interpolate(low_res, size=video_size, mode="bilinear", align_corners=False)
