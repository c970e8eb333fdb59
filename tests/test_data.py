"""Loaders on the real Fashion-MNIST files and on small files written in the real formats."""

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ddpm.data import DatasetError, ImageData, batch_stream, load_images
from ddpm.data.sources import DATASETS, Source, fetch, locate, md5sum

FASHION = Path("/usr/share/datasets/fashion-mnist")

MNIST_SHAPE = {"image_size": 28, "channels": 1}


def write_idx(path: Path, images: np.ndarray, compress: bool = True) -> None:
    header = bytes([0, 0, 0x08, images.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in images.shape
    )
    data = header + images.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No user cache or DDPM_DATA leaks into the search order."""
    monkeypatch.setenv("DDPM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DDPM_DATA", raising=False)
    return tmp_path


@pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist (make data)")
def test_real_fashion_mnist():
    train = load_images("fashion_mnist", split="train", **MNIST_SHAPE)
    test = load_images("fashion_mnist", split="test", **MNIST_SHAPE)
    assert train.shape == (60000, 28, 28, 1) and test.shape == (10000, 28, 28, 1)
    assert train.dtype == np.uint8 and train.max() == 255 and 70 < train.mean() < 75


def test_mnist_from_idx_files(isolated):
    root = isolated / "mnist"
    root.mkdir()
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28))
    write_idx(root / "train-images-idx3-ubyte.gz", images)
    write_idx(root / "t10k-images-idx3-ubyte.gz", images[:2])
    got = load_images("mnist", root=str(root), split="train", **MNIST_SHAPE)
    np.testing.assert_array_equal(got[..., 0], images)


def test_truncated_idx_names_the_file(isolated):
    root = isolated / "mnist"
    root.mkdir()
    write_idx(root / "t10k-images-idx3-ubyte.gz", np.zeros((2, 28, 28)))
    bad = root / "train-images-idx3-ubyte.gz"
    write_idx(bad, np.zeros((5, 28, 28)))
    bad.write_bytes(bad.read_bytes()[:-20])  # cut the gzip stream
    with pytest.raises(DatasetError, match=str(bad)):
        load_images("mnist", root=str(root), split="train", **MNIST_SHAPE)


def test_idx_with_wrong_size_names_the_file(isolated):
    root = isolated / "mnist"
    root.mkdir()
    bad = root / "train-images-idx3-ubyte.gz"
    header = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in (5, 28, 28))
    bad.write_bytes(gzip.compress(header + bytes(100)))
    write_idx(root / "t10k-images-idx3-ubyte.gz", np.zeros((2, 28, 28)))
    with pytest.raises(DatasetError, match=f"{bad}.*truncated"):
        load_images("mnist", root=str(root), split="train", **MNIST_SHAPE)


def test_missing_data_says_where_it_looked_and_how_to_get_it(isolated, monkeypatch):
    monkeypatch.setenv("DDPM_DATA", str(isolated / "data"))
    with pytest.raises(DatasetError) as err:
        load_images("mnist", root=str(isolated / "nowhere"), split="train", **MNIST_SHAPE)
    message = str(err.value)
    for folder in [
        isolated / "nowhere",
        isolated / "data" / "mnist",
        isolated / "cache" / "mnist",
        Path("/usr/share/datasets/mnist"),
    ]:
        assert str(folder) in message
    assert "To get it" in message


def test_offline_download_failure_is_reported(isolated, monkeypatch):
    src = Source(
        name="mnist",
        required=("train-images-idx3-ubyte.gz",),
        read=None,
        urls={"train-images-idx3-ubyte.gz": ("http://127.0.0.1:9/", "0" * 32)},
        how_to_get="copy the files",
    )
    with pytest.raises(DatasetError, match="Download failed"):
        locate(src, None, download=True)


def test_fetch_verifies_checksums(isolated):
    served = isolated / "served"
    served.mkdir()
    write_idx(served / "train-images-idx3-ubyte.gz", np.ones((3, 28, 28)))
    good = md5sum(served / "train-images-idx3-ubyte.gz")
    src = Source(
        name="x",
        required=("train-images-idx3-ubyte.gz",),
        read=None,
        urls={"train-images-idx3-ubyte.gz": (served.as_uri() + "/", good)},
    )
    dest = fetch(src, isolated / "dest")
    assert md5sum(dest / "train-images-idx3-ubyte.gz") == good
    bad = Source(
        name="x",
        required=(),
        read=None,
        urls={"train-images-idx3-ubyte.gz": (served.as_uri() + "/", "f" * 32)},
    )
    with pytest.raises(OSError, match="checksum mismatch"):
        fetch(bad, isolated / "dest2")
    assert not (isolated / "dest2" / "train-images-idx3-ubyte.gz").exists()


def write_cifar(folder: Path, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": list(range(n))}, f)
    return data


def test_cifar10_pickles(isolated):
    data = write_cifar(isolated / "c" / "cifar-10-batches-py", 4, 0)
    got = load_images("cifar10", root=str(isolated / "c"), split="train", image_size=32, channels=3)
    assert got.shape == (20, 32, 32, 3)
    np.testing.assert_array_equal(got[0, :, :, 1], data[0, 1024:2048].reshape(32, 32))


def test_corrupt_cifar_names_the_file(isolated):
    folder = isolated / "c" / "cifar-10-batches-py"
    write_cifar(folder, 2, 0)
    (folder / "data_batch_3").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DatasetError, match="data_batch_3"):
        load_images("cifar10", root=str(isolated / "c"), split="train", image_size=32, channels=3)


def test_image_folder_resizes_and_crops(isolated):
    folder = isolated / "imgs" / "sub"
    folder.mkdir(parents=True)
    wide = np.zeros((40, 80, 3), np.uint8)
    wide[:, 30:50] = 255  # a white band in the centre survives the centre crop
    Image.fromarray(wide).save(folder / "a.png")
    Image.fromarray(np.full((50, 50, 3), 128, np.uint8)).save(folder / "b.jpg")
    got = load_images(
        "image_folder", root=str(isolated / "imgs"), split="train", image_size=16, channels=3
    )
    assert got.shape == (2, 16, 16, 3)
    assert got[0, :, 8].mean() > 200 and got[0, :, 0].mean() < 30
    gray = load_images(
        "image_folder", root=str(isolated / "imgs"), split="train", image_size=8, channels=1
    )
    assert gray.shape == (2, 8, 8, 1)


def test_image_folder_bad_file_and_empty(isolated):
    folder = isolated / "imgs"
    folder.mkdir()
    with pytest.raises(DatasetError, match="no images"):
        load_images("image_folder", root=str(folder), split="train", **MNIST_SHAPE)
    (folder / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="broken.png"):
        load_images("image_folder", root=str(folder), split="train", **MNIST_SHAPE)


def test_registry_lists_datasets():
    assert DATASETS.names() == ["cifar10", "fashion_mnist", "image_folder", "mnist"]


def test_pipeline_batches_scaling_flips_and_resume():
    images = np.tile(np.arange(8, dtype=np.uint8) * 30, (40, 8, 1))[..., None]  # [40, 8, 8, 1]
    images[:, 0, 0, 0] = np.arange(40)  # tag each image
    data = ImageData(images, random_flip=True)
    stream = batch_stream(data, 8, seed=5)
    batches = [next(stream)[0] for _ in range(12)]  # 2.4 epochs of 5 batches
    first = batches[0]
    assert first.shape == (8, 1, 8, 8) and first.dtype == np.float32
    assert first.min() >= -1.0 and first.max() <= 1.0 + 1e-6
    rows = np.concatenate([b[:, 0, 1] for b in batches[:5]])  # row 1 is a ramp, flipped or not
    flipped = rows[:, 0] > rows[:, -1]
    assert 5 < flipped.sum() < 35  # a fair coin over 40 images
    unflipped = batch_stream(ImageData(images, random_flip=False), 8, seed=5)
    epoch = np.concatenate([next(unflipped)[0] for _ in range(5)])
    tags = np.round((epoch[:, 0, 0, 0] + 1) * 127.5).astype(int)
    assert sorted(tags) == list(range(40))  # one epoch visits every image exactly once
    resumed = batch_stream(data, 8, seed=5, start_step=7)
    for k in range(7, 12):
        np.testing.assert_array_equal(next(resumed)[0], batches[k])
    other = next(batch_stream(data, 8, seed=6))[0]
    assert not np.array_equal(other, first)
