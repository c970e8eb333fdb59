"""Stage 4, the data: loaders per file format, located or downloaded, the batch stream
and image grids."""

from ddpm.data.pipeline import ImageData, batch_stream
from ddpm.data.sources import DATASETS, DatasetError, class_names, load_images, load_labels

__all__ = [
    "DATASETS",
    "DatasetError",
    "ImageData",
    "batch_stream",
    "class_names",
    "load_images",
    "load_labels",
]
