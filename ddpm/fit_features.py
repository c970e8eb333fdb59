"""Fit a dataset's feature network once: `python -m ddpm.fit_features dataset=<name>`.

Trains a small MindSpore classifier on the training split, reports its test accuracy,
and caches its weights and the test set's feature statistics (see ddpm.evaluation.feature_net).
"""

from __future__ import annotations

import argparse
import sys
import time

import ddpm  # noqa: F401  (sets oneDNN and OpenMP variables before MindSpore loads)

# isort: split
import mindspore as ms
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException

from ddpm.cli import non_negative_int, positive_int, run_tool
from ddpm.config.errors import ConfigError
from ddpm.config.groups import CONF_DIR, resolve
from ddpm.data.sources import load_images, load_labels
from ddpm.evaluation import feature_net
from ddpm.evaluation.scores import feature_stats


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ddpm.fit_features", description=__doc__)
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. dataset=fashion_mnist")
    p.add_argument("--epochs", type=positive_int, default=5)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--limit", type=positive_int, help="use only the first N training images")
    return p.parse_args(argv)


def dataset_option(overrides: list[str]):
    """The dataset option of the config composed with `overrides`, checked."""
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
    except HydraException as err:
        raise ConfigError(str(err).splitlines()[0]) from None
    return resolve(cfg)["dataset"]


def fit_features(args: argparse.Namespace) -> int:
    ds = dataset_option(args.overrides)
    keys = ds.shared
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(args.seed)

    def load(split: str):
        images = load_images(
            ds.name, split=split, image_size=keys.image_size, channels=keys.channels, **ds.params
        )
        return feature_net.to_model_space(images), load_labels(
            ds.name, split=split, root=ds.params["root"]
        )

    (x_train, y_train), (x_test, y_test) = load("train"), load("test")
    x_train, y_train = x_train[: args.limit], y_train[: args.limit]
    net = feature_net.FeatureNet(keys.channels, keys.image_size, int(y_train.max()) + 1)
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_tool(lambda: fit_features(args))


if __name__ == "__main__":
    sys.exit(main())
