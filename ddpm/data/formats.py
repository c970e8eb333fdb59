"""On-disk format readers. Each returns uint8 images [N, H, W, C]; errors name the file."""

from __future__ import annotations

import gzip
import pickle
import zlib
from pathlib import Path

import numpy as np

from ddpm.config.errors import DatasetError

IDX_DTYPES = {0x08: np.uint8}


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (LeCun's MNIST format), gzip-compressed or not."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetError(f"cannot read {path}: {err} (corrupt or truncated file?)") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise DatasetError(f"{path} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DatasetError(
            f"{path} is truncated or padded: {len(raw)} bytes, header says {expected}"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def read_idx_labels(path: Path) -> np.ndarray:
    labels = read_idx(path)
    if labels.ndim != 1:
        raise DatasetError(f"{path} holds an array of shape {labels.shape}, expected [N] labels")
    return labels.astype(np.int64)


def read_cifar_labels(paths: list[Path]) -> np.ndarray:
    labels = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                labels.append(np.asarray(pickle.load(f, encoding="bytes")[b"labels"], np.int64))
        except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError) as err:
            raise DatasetError(f"cannot read CIFAR labels from {path}: {err!r}") from err
    return np.concatenate(labels)


def read_idx_images(path: Path) -> np.ndarray:
    images = read_idx(path)
    if images.ndim != 3:
        raise DatasetError(f"{path} holds an array of shape {images.shape}, expected [N, H, W]")
    return images[..., None]  # [N, H, W, 1]


def read_cifar_batches(paths: list[Path]) -> np.ndarray:
    """CIFAR-10 'python version' pickles: dict with b'data' [N, 3072] in CHW order."""
    arrays = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            data = np.asarray(batch[b"data"], dtype=np.uint8)
        except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as err:
            raise DatasetError(f"cannot read CIFAR batch {path}: {err!r}") from err
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DatasetError(f"{path}: data has shape {data.shape}, expected [N, 3072]")
        arrays.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # [N, 32, 32, 3]
    return np.concatenate(arrays)


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def image_files(root: Path) -> list[Path]:
    """Every image file under root, in the order of read_image_folder."""
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {root}")
    return files


def folder_classes(root: Path) -> list[str]:
    """The class names of an image folder: its subfolders that hold images, sorted, as in
    torchvision's ImageFolder. Images directly in root have no class: an error."""
    files = image_files(root)
    loose = [f.name for f in files if f.parent == root]
    if loose:
        raise DatasetError(
            f"the image folder {root} has no labels for {len(loose)} image(s) that lie directly "
            f"in it (e.g. {loose[0]}): labels need one subfolder per class, root/<class>/<image>"
        )
    return sorted({f.relative_to(root).parts[0] for f in files})


def read_image_folder_labels(root: Path) -> np.ndarray:
    """The class of each image of read_image_folder: the index of its top subfolder."""
    index = {name: i for i, name in enumerate(folder_classes(root))}
    return np.array([index[f.relative_to(root).parts[0]] for f in image_files(root)], np.int64)


def read_image_folder(root: Path, image_size: int, channels: int) -> np.ndarray:
    """Every image under root, resized (shorter side) and center-cropped to image_size."""
    from PIL import Image, UnidentifiedImageError

    files = image_files(root)
    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(files), image_size, image_size, channels), np.uint8)
    for i, path in enumerate(files):
        try:
            with Image.open(path) as img:
                img = _resize_center_crop(img.convert(mode), image_size)
        except (OSError, UnidentifiedImageError) as err:
            raise DatasetError(f"cannot decode image {path}: {err}") from err
        out[i] = np.asarray(img).reshape(image_size, image_size, channels)
    return out


def _resize_center_crop(img, size: int):
    from PIL import Image

    scale = size / min(img.size)
    w, h = max(size, round(img.width * scale)), max(size, round(img.height * scale))
    img = img.resize((w, h), Image.BILINEAR)
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))
