"""Frozen-backbone features cached on disk vs the backbone run in every epoch of every trial.

    python benchmarks/transfer_feature_cache.py [--trials 3] [--epochs 2] [--images 600]
    python benchmarks/transfer_feature_cache.py --quick    # 2 trials, 1 epoch, 100 images

Each "trial" builds the VGG16 transfer model (random weights: no download needed; ImageNet
weights cost the same per image), trains the frozen phase for --epochs, and is timed. Cached:
the first trial computes and writes the features, later ones read them from disk (the
in-process copy is dropped before every trial, as in a fresh worker process). Uncached: every
trial trains the full model with the frozen backbone on the images. Prints both, per trial,
and the ratio.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tunelab.models import (  # noqa: E402
    Head,
    build_model,
    feature_cache,  # noqa: E402
)
from tunelab.models.data import load_dataset  # noqa: E402
from tunelab.models.training import TrainingSettings  # noqa: E402
from tunelab.models.transfer import train_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 trials, 1 epoch, 100 images")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--images", type=int, default=600, help="training images (digits)")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.epochs, args.images = 2, 1, 100
    data = load_dataset("digits", image_size=8)
    from dataclasses import replace

    data = replace(data, train=data.train.take(np.arange(min(args.images, len(data.train)))))
    head = Head("categorical_crossentropy", data.n_classes)
    settings = TrainingSettings(max_epochs=args.epochs, batch_size=64, early_stopping=False)
    times: dict[str, list[float]] = {"cached": [], "uncached": []}
    with tempfile.TemporaryDirectory() as cache:
        for trial in range(args.trials):
            for mode in ("cached", "uncached"):
                feature_cache.clear_memory()
                keras.backend.clear_session()
                keras.utils.set_random_seed(trial)
                model = build_model("vgg16_transfer", data.input_shape, data.n_classes,
                                    weights=None, dense_units=64)
                started = time.perf_counter()
                train_model(model, head, data, settings, feature_cache_dir=cache,
                            cache_features=mode == "cached")
                times[mode].append(time.perf_counter() - started)
    print(f"VGG16 frozen, {len(data.train)} train + {len(data.val)} val digits resized to "
          f"32x32, {args.epochs} epochs per trial, {os.cpu_count()} CPUs")
    print("trial  uncached_s  cached_s  speed-up")
    for i, (u, c) in enumerate(zip(times["uncached"], times["cached"], strict=True)):
        print(f"{i:5d}  {u:10.2f}  {c:8.2f}  {u / c:7.1f}x" + ("  (computes the cache)"
                                                              if i == 0 else ""))
    total_u, total_c = sum(times["uncached"]), sum(times["cached"])
    later_u, later_c = sum(times["uncached"][1:]), sum(times["cached"][1:])
    print(f"study total: {total_u:.1f} s uncached vs {total_c:.1f} s cached = "
          f"{total_u / total_c:.1f}x")
    if args.trials > 1:
        print(f"trials after the first: {later_u / later_c:.1f}x faster with the cache")
    print(f"extractor runs: {feature_cache.STATS['computed']}, cache reads: "
          f"{feature_cache.STATS['loaded']}")


if __name__ == "__main__":
    main()
