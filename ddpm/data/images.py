"""Conversions between model space [-1, 1] and uint8 images, grids, and files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from ddpm.runtime.atomic import atomic_write


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[B, C, H, W] floats in [-1, 1] -> [B, H, W, C] uint8."""
    x = np.clip((np.asarray(x, np.float32) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return x.transpose(0, 2, 3, 1)


def make_grid(images: np.ndarray, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """[B, H, W, C] uint8 -> one [rows*(H+pad)+pad, cols*(W+pad)+pad, C] image."""
    b, h, w, c = images.shape
    cols = nrow or math.ceil(math.sqrt(b))
    rows = math.ceil(b / cols)
    grid = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad, c), np.uint8)
    for i, img in enumerate(images):
        r, col = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top : top + h, left : left + w] = img
    return grid


def save_png(image: np.ndarray, path: Path) -> None:
    """Save an [H, W, C] uint8 image (C = 1 or 3), atomically."""
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    atomic_write(path, pil.save)


def save_gif(frames: list[np.ndarray], path: Path, duration_ms: int = 60) -> None:
    """Animated GIF of [H, W, C] uint8 frames; the last frame is held for a second."""
    pil = [Image.fromarray(f[..., 0] if f.shape[-1] == 1 else f) for f in frames]
    durations = [duration_ms] * (len(pil) - 1) + [1000]
    pil[0].save(path, save_all=True, append_images=pil[1:], duration=durations, loop=0)
