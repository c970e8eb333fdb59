"""Dataset sources: where each dataset's files are searched for, and how they are fetched.

Search order for a dataset's root: the configured `root`, then $DDPM_DATA/<name>,
then ~/.cache/ddpm/<name>, then the system folders listed per dataset (for Fashion-MNIST,
/usr/share/datasets/fashion-mnist from Debian's `dataset-fashion-mnist`). When nothing is
found and `download` is on, the files go to ~/.cache/ddpm/<name> and are verified by MD5.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np

from ddpm.config.registry import Registry
from ddpm.config.schema import OneOf, PositiveInt
from ddpm.data.formats import (
    DatasetError,
    folder_classes,
    read_cifar_batches,
    read_cifar_labels,
    read_idx_images,
    read_idx_labels,
    read_image_folder,
    read_image_folder_labels,
)


@dataclass(frozen=True)
class DatasetKeys:
    """The keys every dataset takes."""

    image_size: PositiveInt  # images are resized (image_folder) or must already be this size
    channels: Annotated[int, OneOf((1, 3))]
    random_flip: bool  # horizontal flips as augmentation


@dataclass(frozen=True)
class Downloadable:
    """Keys of a dataset that is searched for, and downloaded if missing."""

    root: str | None  # searched first; see the module docstring for the rest
    download: bool


@dataclass(frozen=True)
class UserFolder:
    """Keys of a dataset that is a folder the user names."""

    root: str


DATASETS = Registry("dataset", shared=DatasetKeys)

IDX_FILES = {
    "train": "train-images-idx3-ubyte.gz",
    "test": "t10k-images-idx3-ubyte.gz",
}
IDX_LABELS = {
    "train": "train-labels-idx1-ubyte.gz",
    "test": "t10k-labels-idx1-ubyte.gz",
}


@dataclass(frozen=True)
class Source:
    """How to find, fetch and read one dataset."""

    name: str
    required: tuple[str, ...]  # files (relative to root) that must exist
    read: Callable[[Path, str, int, int], np.ndarray]  # (root, split, size, C) -> uint8 [N,H,W,C]
    urls: dict[str, tuple[str, str]] = field(default_factory=dict)  # file -> (url, md5)
    system_dirs: tuple[str, ...] = ()
    how_to_get: str = ""
    archive: str | None = None  # downloaded file to extract into root, if any
    read_labels: Callable[[Path, str], np.ndarray] | None = None  # (root, split) -> int [N]
    classes: tuple[str, ...] | None = None  # the label names; None: read from the folder


def _idx_reader(root: Path, split: str, image_size: int, channels: int) -> np.ndarray:
    return read_idx_images(root / IDX_FILES[split])


def _idx_labels(root: Path, split: str) -> np.ndarray:
    return read_idx_labels(root / IDX_LABELS[split])


def _cifar_files(root: Path, split: str) -> list[Path]:
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    return [root / "cifar-10-batches-py" / n for n in names]


def _cifar_reader(root: Path, split: str, image_size: int, channels: int) -> np.ndarray:
    return read_cifar_batches(_cifar_files(root, split))


FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"

for _src in (
    Source(
        name="fashion_mnist",
        required=tuple(IDX_FILES.values()),
        read=_idx_reader,
        urls={
            "train-images-idx3-ubyte.gz": (FASHION_URL, "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            "t10k-images-idx3-ubyte.gz": (FASHION_URL, "bef4ecab320f06d8554ea6380940ec79"),
            "train-labels-idx1-ubyte.gz": (FASHION_URL, "25c81989df183df01b3e8a0aad5dffbe"),
            "t10k-labels-idx1-ubyte.gz": (FASHION_URL, "bb300cfdad3c16e7a12a480ee83cd310"),
        },
        read_labels=_idx_labels,
        classes=FASHION_CLASSES,
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        how_to_get="apt-get install dataset-fashion-mnist  (Debian/Ubuntu), or run once online",
    ),
    Source(
        name="mnist",
        required=tuple(IDX_FILES.values()),
        read=_idx_reader,
        urls={
            "train-images-idx3-ubyte.gz": (MNIST_URL, "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            "t10k-images-idx3-ubyte.gz": (MNIST_URL, "9fb629c4189551a2d022fa330f9573f3"),
            "train-labels-idx1-ubyte.gz": (MNIST_URL, "d53e105ee54ea40749a09fcbcd1e9432"),
            "t10k-labels-idx1-ubyte.gz": (MNIST_URL, "ec29112dd5afa0611ce80d1b7f02629c"),
        },
        read_labels=_idx_labels,
        classes=tuple(str(d) for d in range(10)),
        system_dirs=("/usr/share/datasets/mnist",),
        how_to_get="run once online, or copy the four IDX .gz files into one of these folders",
    ),
    Source(
        name="cifar10",
        required=("cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/test_batch"),
        read=_cifar_reader,
        urls={
            "cifar-10-python.tar.gz": (
                "https://www.cs.toronto.edu/~kriz/",
                "c58f30108f718f92721af3b95e74349a",
            )
        },
        archive="cifar-10-python.tar.gz",
        read_labels=lambda root, split: read_cifar_labels(_cifar_files(root, split)),
        classes=CIFAR10_CLASSES,
        how_to_get="run once online, or extract cifar-10-python.tar.gz into one of these folders",
    ),
    Source(
        name="image_folder",
        required=(),
        read=lambda root, split, size, channels: read_image_folder(root, size, channels),
        read_labels=lambda root, split: read_image_folder_labels(root),
        how_to_get="set dataset.root=<a folder of images>",
    ),
):
    DATASETS.register(_src.name, schema=UserFolder if not _src.required else Downloadable)(_src)


def candidate_roots(name: str, root: str | None, system_dirs: tuple[str, ...]) -> list[Path]:
    """The documented search order for a dataset's folder."""
    dirs = [Path(root).expanduser()] if root else []
    if os.environ.get("DDPM_DATA"):
        dirs.append(Path(os.environ["DDPM_DATA"]).expanduser() / name)
    dirs.append(cache_dir(name))
    dirs.extend(Path(d) for d in system_dirs)
    return dirs


def cache_dir(name: str) -> Path:
    return Path(os.environ.get("DDPM_CACHE", "~/.cache/ddpm")).expanduser() / name


def locate(source: Source, root: str | None, download: bool) -> Path:
    """The first folder holding all required files; downloads into the cache if allowed."""
    if not source.required:  # a user folder, nothing to search for
        if root and Path(root).expanduser().is_dir():
            return Path(root).expanduser()
        raise DatasetError(f"{source.name} needs an existing folder: {source.how_to_get}")
    searched = candidate_roots(source.name, root, source.system_dirs)
    for folder in searched:
        if all((folder / f).is_file() for f in source.required):
            return folder
    errors = ""
    if download and source.urls:
        try:
            return fetch(source, cache_dir(source.name))
        except OSError as err:  # URLError, timeouts, checksum mismatch
            errors = f"\nDownload failed: {err}"
    looked = "\n".join(f"  - {d}" for d in searched)
    raise DatasetError(
        f"dataset {source.name!r} not found. Looked for {', '.join(source.required)} in:\n{looked}"
        f"{errors}\nTo get it: {source.how_to_get}; or set dataset.root=<folder>."
    )


def fetch(source: Source, dest: Path) -> Path:
    """Download each file, check its MD5, and extract archives; returns dest."""
    dest.mkdir(parents=True, exist_ok=True)
    for filename, (base, md5) in source.urls.items():
        target = dest / filename
        if not (target.is_file() and md5sum(target) == md5):
            tmp = target.with_suffix(target.suffix + ".part")
            urllib.request.urlretrieve(base + filename, tmp)  # noqa: S310 (fixed https/http URLs)
            if md5sum(tmp) != md5:
                tmp.unlink()
                raise OSError(f"checksum mismatch for {base + filename}")
            tmp.replace(target)
    if source.archive:
        with tarfile.open(dest / source.archive) as tar:
            tar.extractall(dest, filter="data")
    return dest


def md5sum(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_images(
    name: str,
    *,
    split: str,
    image_size: int,
    channels: int,
    root: str | None = None,
    download: bool = False,
) -> np.ndarray:
    """uint8 images [N, H, W, C] of dataset `name`, split 'train' or 'test'."""
    source = DATASETS.get(name)
    return source.read(locate(source, root, download), split, image_size, channels)


def load_labels(
    name: str, *, split: str = "train", root: str | None = None, download: bool = True
) -> np.ndarray:
    """int64 class labels [N] of a labelled dataset, in the order of load_images."""
    source = DATASETS.get(name)
    if source.read_labels is None:
        raise DatasetError(f"dataset {name!r} has no labels")
    folder = locate(source, root, download)
    if not all((folder / f).is_file() for f in source.urls if "labels" in f):
        raise DatasetError(f"no label files for {name!r} in {folder}")
    return source.read_labels(folder, split)


def class_names(name: str, root: str | None = None) -> list[str]:
    """The label names of dataset `name`, index i naming label i; an image folder's are its
    subfolders (ddpm.data.formats.folder_classes)."""
    source = DATASETS.get(name)
    if source.classes is not None:
        return list(source.classes)
    if source.read_labels is None:
        raise DatasetError(f"dataset {name!r} has no labels")
    return folder_classes(locate(source, root, download=False))
