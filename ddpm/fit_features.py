"""Fit a dataset's feature network once: `python -m ddpm.fit_features dataset=<name>`.

Trains a small MindSpore classifier on the training split, reports its test accuracy,
and caches its weights and the test set's feature statistics (see ddpm.quality.feature_net).
"""

from __future__ import annotations

import argparse
import sys
import time

import ddpm  # noqa: F401  (sets oneDNN and OpenMP variables before MindSpore loads)

# isort: split
import mindspore as ms
from hydra import compose, initialize_config_dir

from ddpm.build import CONF_DIR
from ddpm.data.formats import DatasetError
from ddpm.data.sources import load_images, load_labels
from ddpm.quality import feature_net
from ddpm.quality.scores import feature_stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ddpm.fit_features", description=__doc__)
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. dataset=fashion_mnist")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, help="use only the first N training images (smoke tests)")
    args = p.parse_args(argv)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        ds = compose(config_name="config", overrides=args.overrides).dataset
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(args.seed)
    try:
        load = lambda split: (  # noqa: E731
            feature_net.to_model_space(
                load_images(
                    ds.name,
                    split=split,
                    root=ds.root,
                    image_size=ds.image_size,
                    channels=ds.channels,
                )
            ),
            load_labels(ds.name, split=split, root=ds.root),
        )
        (x_train, y_train), (x_test, y_test) = load("train"), load("test")
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    net = feature_net.FeatureNet(ds.channels, ds.image_size, int(y_train.max()) + 1)
    start = time.perf_counter()
    feature_net.fit(net, x_train, y_train, args.epochs, args.seed)
    features, probs = feature_net.predict(net, x_test)
    accuracy = float((probs.argmax(1) == y_test).mean())
    mu, sigma = feature_stats(features)
    folder = feature_net.feature_dir(ds.name)
    feature_net.save(
        feature_net.FeatureSpace(net, features, mu, sigma, accuracy),
        folder,
        {
            "dataset": ds.name,
            "epochs": args.epochs,
            "seed": args.seed,
            "fit_seconds": round(time.perf_counter() - start, 1),
        },
    )
    print(
        f"{ds.name}: test accuracy {accuracy:.4f} after {args.epochs} epochs "
        f"({time.perf_counter() - start:.0f} s); cached in {folder}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
