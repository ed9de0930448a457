"""Input pipeline: training throughput from image folders against tensors already in memory.

An image folder is written from PneumoniaMNIST (``ROOT/train/<class>/*.png``,
``ROOT/val/<class>/*.png``) and loaded the way a study loads it: decoded once into tunelab's
memory-mapped cache, then fed by ``tunelab.models.training.input_pipelines`` (``tf.data``:
cached in RAM and prefetched, or streamed from the memory map when the split would not fit
under ``memory_limit_mb``). The baseline trains the same model on the same tensors already
in memory with plain ``model.fit(x, y, batch_size=...)``. With augmentation, the baseline
applies the same Keras augmentation layers inside the model, so both do the same work.

Variants are measured in rounds, one epoch-timed fit of each per round in rotated order
(the first epoch of every fit, which traces the graph, is not timed), and the ratio is taken
per round so load from other processes falls on both sides:

    tunelab, in RAM       / in-memory tensors            (target >= 0.95)
    tunelab, streamed     / in-memory tensors            (datasets larger than RAM)
    tunelab + augmentation / in-memory tensors + the same augmentation layers

    python benchmarks/input_pipeline.py            # PneumoniaMNIST at 64x64, 5 rounds x 3 epochs
    python benchmarks/input_pipeline.py --quick    # digits, 1 round x 2 epochs
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
PNEUMONIA = REPO.parent / "shared" / "data" / "pneumoniamnist.npz"
AUGMENT = {"rotation": 10.0, "width_shift": 0.1, "height_shift": 0.1, "horizontal_flip": True,
           "zoom": 0.1}


def write_image_folder(root: Path, quick: bool) -> Path:
    """PNG files laid out like the labs' folders, from the shared .npz (or digits)."""
    import numpy as np
    from PIL import Image

    if quick or not PNEUMONIA.exists():
        from sklearn.datasets import load_digits

        d = load_digits()
        x = (d.images * 255 / 16).astype("uint8")
        y = d.target
        n_val = len(x) // 5
        splits = {"train": (x[n_val:], y[n_val:]), "val": (x[:n_val], y[:n_val])}
    else:
        npz = np.load(PNEUMONIA)
        splits = {"train": (npz["train_images"], npz["train_labels"].reshape(-1)),
                  "val": (npz["val_images"], npz["val_labels"].reshape(-1))}
    for split, (x, y) in splits.items():
        for i, (image, label) in enumerate(zip(x, y, strict=True)):
            folder = root / split / f"class_{int(label)}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i:05d}.png")
    return root


class EpochTimer:
    def __new__(cls):
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.seconds: list[float] = []

            def on_epoch_begin(self, epoch, logs=None):
                self._start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self._start)

        return _Timer()


def make_model(data, head, seed: int, augmentation=None):
    import keras

    from tunelab.models import build_model
    from tunelab.models.training import TrainingSettings, compile_model

    keras.utils.set_random_seed(seed)
    model = build_model("lenet", data.input_shape, data.n_classes, loss=head.loss, n_base=8)
    if augmentation is not None:
        layer = augmentation.layer(seed=seed)
        model = keras.Sequential([keras.Input(data.input_shape), layer, model])
    compile_model(model, head, TrainingSettings(learning_rate=1e-3))
    return model


def images_per_second(data, variant: str, *, epochs: int, batch_size: int, seed: int) -> float:
    """Training throughput of one fit, first (tracing) epoch excluded."""
    import numpy as np

    from tunelab.models import Head
    from tunelab.models.training import TrainingSettings, input_pipelines

    head = Head("categorical_crossentropy", data.n_classes)
    augment = variant.endswith("+aug")
    settings = TrainingSettings(batch_size=batch_size, seed=seed,
                                memory_limit_mb=0 if variant.startswith("streamed") else None,
                                **(AUGMENT if augment else {}))
    timer = EpochTimer()
    if variant.startswith("arrays"):
        model = make_model(data, head, seed, settings.augmentation if augment else None)
        x = np.asarray(data.train.x, dtype="float32")  # already in memory before the clock
        model.fit(x, head.encode_labels(data.train.y), batch_size=batch_size,
                  epochs=epochs + 1, shuffle=True, verbose=0, callbacks=[timer])
    else:
        model = make_model(data, head, seed)
        train_ds, _ = input_pipelines(data, head, settings)
        model.fit(train_ds, epochs=epochs + 1, verbose=0, callbacks=[timer])
    return len(data.train) * epochs / sum(timer.seconds[1:])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits, 1 round of 2 epochs")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.epochs, args.image_size = 1, 2, 16
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    from tunelab.models.data import load_dataset

    variants = ["arrays", "in-ram", "streamed", "arrays+aug", "in-ram+aug"]
    rates: dict[str, list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="tunelab-pipeline-") as tmp:
        root = write_image_folder(Path(tmp) / "images", args.quick)
        start = time.perf_counter()
        data = load_dataset(str(root), image_size=args.image_size, cache_dir=Path(tmp) / "cache",
                            progress=False)
        decode = time.perf_counter() - start
        for r in range(args.rounds):
            shift = r % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                rate = images_per_second(data, variant, epochs=args.epochs,
                                         batch_size=args.batch_size, seed=r)
                rates[variant].append(rate)
                print(f"round {r} {variant:>11}: {rate:8.0f} images/s", flush=True)
    source = "digits" if args.quick or not PNEUMONIA.exists() else "pneumoniamnist"

    def ratio(a: str, b: str) -> str:
        per_round = [x / y for x, y in zip(rates[a], rates[b], strict=True)]
        return (f"{statistics.median(per_round):.3f} [{min(per_round):.3f}, "
                f"{max(per_round):.3f}]")

    print(f"\n{len(data.train)} training images from an image folder ({source} PNGs, resized to "
          f"{args.image_size}x{args.image_size}), LeNet n_base 8, batch {args.batch_size}, "
          f"{args.rounds} rounds x {args.epochs} timed epochs; decoded once in {decode:.1f} s")
    print(f"{'variant':<12} {'images/s (median)':>18}")
    for v in variants:
        print(f"{v:<12} {statistics.median(rates[v]):>18.0f}")
    print("\nratios per round, median [min, max]:")
    print(f"  tunelab in RAM / in-memory tensors:           {ratio('in-ram', 'arrays')} "
          f"(target >= 0.95)")
    print(f"  tunelab streamed / in-memory tensors:         {ratio('streamed', 'arrays')}")
    print(f"  tunelab + augmentation / tensors + same aug:  {ratio('in-ram+aug', 'arrays+aug')}")


if __name__ == "__main__":
    main()
