"""Image datasets: loaders per file format, located or downloaded, fed through mindspore.dataset."""

from ddpm.data.pipeline import ImageData, batch_stream
from ddpm.data.sources import DATASETS, DatasetError, load_images

__all__ = ["DATASETS", "DatasetError", "ImageData", "batch_stream", "load_images"]
