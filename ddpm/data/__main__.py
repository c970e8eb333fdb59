"""Locate (or download) a dataset and print its folder: `python -m ddpm.data fashion_mnist`."""

from __future__ import annotations

import argparse
import sys

from ddpm.data.formats import DatasetError
from ddpm.data.sources import DATASETS, locate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ddpm.data", description=__doc__)
    parser.add_argument("name", choices=[n for n in DATASETS.names() if n != "image_folder"])
    parser.add_argument("--root", help="a folder to look in first")
    parser.add_argument("--no-download", action="store_true")
    args = parser.parse_args(argv)
    try:
        folder = locate(DATASETS.get(args.name), args.root, download=not args.no_download)
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.name}: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
