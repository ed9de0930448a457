"""Lab-sized images: throughput, memory and the feature cache at 128x128 (and 224x224).

The labs train on 128x128 grey images (skin, bone, X-ray) and use VGG16 at its 224x224 input
size for transfer; every other benchmark runs at 8 to 28 px. This one writes an image folder
the way the labs keep theirs (``train/<class>/*.png``, ``val/<class>/*.png``) from the shared
BreastMNIST (28x28, upscaled bilinearly to 128x128 PNGs; digits when the shared data is
absent), loads it as a study does (decoded once into the memory-mapped cache) and measures:

* ``alexnet-128``: AlexNet ``n_base`` 8 on 128x128x1, the first (tracing) epoch not timed:
  epochs/s and images/s of training, peak resident memory of the process;
* ``vgg16-<size>-uncached`` / ``-cached``: the VGG16 transfer model (frozen backbone,
  ``weights=None``: random weights, because this machine has no internet to fetch the
  ImageNet file, which costs the same per image) at 128x128 and at VGG16's 224x224, one
  trial per fresh process as in a recycled worker: uncached runs the backbone in every epoch;
  cached computes the features in the first round and reads them from disk afterwards.

Every case runs in its own process (so its peak RSS is its own), and the cases alternate
round by round, so load from other processes falls on all of them; ratios are per round.

    python benchmarks/lab_sized.py                 # 64 + 32 images, 2 rounds, 1 timed epoch
    python benchmarks/lab_sized.py --quick         # 16 + 8 images, 2 rounds, 1 epoch; VGG16 at
                                                   # 48 px only (the smoke test: minutes, not hours)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TUNELAB_SHARED_DATA") or REPO.parent / "shared" / "data")
BREAST = SHARED / "breastmnist.npz"
LAB_SIZE = 128
VGG_SIZE = 224


def write_lab_folder(root: Path, n_train: int, n_val: int, size: int = LAB_SIZE,
                     source: Path = BREAST) -> str:
    """PNG files of ``size`` px in ``root/train|val/<class>/``, balanced across classes;
    returns what they were made from."""
    import numpy as np
    from PIL import Image

    if source.exists():
        npz = np.load(source)
        splits = {"train": (npz["train_images"], npz["train_labels"].reshape(-1)),
                  "val": (npz["val_images"], npz["val_labels"].reshape(-1))}
        name = source.stem
    else:
        from sklearn.datasets import load_digits

        d = load_digits(n_class=2)
        x, y = (d.images * 255 / 16).astype("uint8"), d.target
        half = len(x) // 2
        splits = {"train": (x[:half], y[:half]), "val": (x[half:], y[half:])}
        name = "digits (the shared BreastMNIST is absent)"
    for split, n in (("train", n_train), ("val", n_val)):
        x, y = splits[split]
        per_class = [list(np.flatnonzero(y == c)) for c in sorted(set(y.tolist()))]
        rows = [i for group in zip(*per_class, strict=False) for i in group]  # round-robin
        rows += [i for rest in per_class for i in rest[min(map(len, per_class)):]]
        for i in rows[:n]:
            folder = root / split / f"class_{int(y[i])}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[i]).resize((size, size), Image.BILINEAR).save(
                folder / f"{i:05d}.png")
    return name


# -- one case, in its own process ---------------------------------------------------------------
def run_case(case: str, folder: str, cache: str, epochs: int, seed: int) -> dict:
    import resource

    import keras

    from tunelab.models import Head, build_model, feature_cache
    from tunelab.models.data import load_dataset
    from tunelab.models.training import TrainingSettings
    from tunelab.models.transfer import train_model

    feature_cache.clear_memory()  # as in a fresh worker process: the disk cache only
    keras.backend.clear_session()
    before = dict(feature_cache.STATS)
    started = time.perf_counter()
    size = int(case.split("-")[1])
    data = load_dataset(folder, image_size=size, cache_dir=Path(cache) / "images",
                        progress=False)
    load_s = time.perf_counter() - started
    head = Head("binary_crossentropy", data.n_classes)
    keras.utils.set_random_seed(seed)
    if case.startswith("alexnet"):
        model = build_model("alexnet", data.input_shape, 2, loss=head.loss, n_base=8)
    else:
        model = build_model("vgg16_transfer", data.input_shape, 2, loss=head.loss,
                            weights=None, dense_units=64)
    seconds: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self._t)

    # one more epoch than timed: the first traces the graph (the trial time includes it)
    settings = TrainingSettings(max_epochs=epochs + 1, batch_size=32, early_stopping=False,
                                seed=seed)
    fit_start = time.perf_counter()
    result = train_model(model, head, data, settings, callbacks=[Timer()],
                         feature_cache_dir=str(Path(cache) / "features"),
                         cache_features=not case.endswith("-uncached"))
    trial_s = time.perf_counter() - fit_start
    epoch_s = seconds[1:]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"case": case, "size": size, "train_images": len(data.train),
            "val_images": len(data.val), "n_params": int(model.count_params()),
            "load_s": load_s, "trial_s": trial_s, "epoch_s": epoch_s,
            "epochs_per_s": len(epoch_s) / sum(epoch_s),
            "images_per_s": len(data.train) * len(epoch_s) / sum(epoch_s),
            "peak_rss_mb": peak, "feature_cache": result.extra.get("feature_cache"),
            "computed": feature_cache.STATS["computed"] - before.get("computed", 0),
            "loaded": feature_cache.STATS["loaded"] - before.get("loaded", 0)}


def child(case: str, folder: Path, cache: Path, epochs: int, seed: int,
          in_process: bool = False) -> dict:
    if in_process:  # --quick: no process start per case; peak RSS is then the whole run's
        return run_case(case, str(folder), str(cache), epochs, seed)
    proc = subprocess.run([sys.executable, __file__, "--child", case, "--folder", str(folder),
                           "--cache", str(cache), "--epochs", str(epochs),
                           "--seed", str(seed)], capture_output=True, text=True, cwd=REPO,
                          timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"case {case} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="16 + 8 images, 2 rounds, 1 timed epoch, VGG16 at 48 px only, in "
                        "this process")
    parser.add_argument("--train", type=int, default=64, help="training images (default 64)")
    parser.add_argument("--val", type=int, default=32, help="validation images (default 32)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every case (default 2)")
    parser.add_argument("--epochs", type=int, default=1,
                        help="timed epochs, after one untimed tracing epoch (default 1)")
    parser.add_argument("--vgg-sizes", default=f"{LAB_SIZE},{VGG_SIZE}",
                        help=f"image sides of the VGG16 transfer cases (default "
                        f"{LAB_SIZE},{VGG_SIZE})")
    parser.add_argument("--out", type=Path, help="write results.json here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_case(args.child, args.folder, args.cache, args.epochs,
                                  args.seed)))
        return
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notes between cases
    if args.quick:
        args.train, args.val, args.rounds, args.epochs, args.vgg_sizes = 16, 8, 2, 1, "48"
    vgg_sizes = [int(v) for v in args.vgg_sizes.split(",") if v.strip()]
    cases = [f"alexnet-{LAB_SIZE}"] + [f"vgg16-{v}-{kind}" for v in vgg_sizes
                                       for kind in ("uncached", "cached")]
    results: dict[str, list[dict]] = {c: [] for c in cases}
    with tempfile.TemporaryDirectory(prefix="tunelab-lab-sized-") as tmp:
        folder, cache = Path(tmp) / "images", Path(tmp) / "cache"
        started = time.perf_counter()
        source = write_lab_folder(folder, args.train, args.val)
        write_s = time.perf_counter() - started
        from tunelab.models.data import load_dataset

        decode = {}
        for size in sorted({int(c.split("-")[1]) for c in cases}):
            started = time.perf_counter()
            load_dataset(str(folder), image_size=size, cache_dir=cache / "images",
                         progress=False)
            decode[size] = time.perf_counter() - started
        cache_mb = sum(p.stat().st_size for p in (cache / "images").rglob("*")
                       if p.is_file()) / 2**20
        for r in range(args.rounds):
            shift = r % len(cases)
            for case in cases[shift:] + cases[:shift]:
                row = child(case, folder, cache, args.epochs, r, in_process=args.quick)
                results[case].append(row)
                print(f"round {r} {case:<19} trial {row['trial_s']:7.2f} s  "
                      f"{row['images_per_s']:8.1f} images/s  peak RSS {row['peak_rss_mb']:6.0f} MB"
                      f"  features: {row['feature_cache']}", flush=True)
        feature_mb = sum(p.stat().st_size for p in (cache / "features").rglob("*.npy")
                         ) / 2**20 if (cache / "features").exists() else 0.0

    first = results[cases[0]][0]
    print(f"\n{first['train_images']} train + {first['val_images']} val images from {source}, "
          f"upscaled to {LAB_SIZE}x{LAB_SIZE} PNGs (written in {write_s:.1f} s); decoded once "
          + ", ".join(f"at {s}x{s} in {t:.1f} s" for s, t in decode.items())
          + f" (image cache {cache_mb:.1f} MB); {args.rounds} rounds x {args.epochs} timed "
          f"epochs, batch 32, {os.cpu_count()} CPUs; VGG16 weights=None (offline)"
          + ("; --quick: every case in this process, so peak RSS is the run's" if args.quick
             else "; every case in a fresh process"))
    print(f"{'case':<20} {'params':>10} {'trial s':>9} {'epochs/s':>9} {'images/s':>9} "
          f"{'peak RSS MB':>12}")
    for case in cases:
        rows = results[case]
        later = rows[1:] if case.endswith("-cached") and len(rows) > 1 else rows
        print(f"{case:<20} {rows[0]['n_params']:>10,} "
              f"{statistics.median(r['trial_s'] for r in later):>9.2f} "
              f"{statistics.median(r['epochs_per_s'] for r in later):>9.3f} "
              f"{statistics.median(r['images_per_s'] for r in later):>9.1f} "
              f"{max(r['peak_rss_mb'] for r in rows):>12.0f}")
    print("\nper-round ratios, median [min, max]:")
    for size in vgg_sizes:
        unc, cac = results.get(f"vgg16-{size}-uncached"), results.get(f"vgg16-{size}-cached")
        if not unc or not cac:
            continue
        print(f"  vgg16 {size}px: the trial that computes the cache, uncached / cached: "
              f"{unc[0]['trial_s'] / cac[0]['trial_s']:.2f}")
        if len(cac) > 1:
            ratios = [u["trial_s"] / c["trial_s"] for u, c in zip(unc[1:], cac[1:],
                                                                      strict=True)]
            print(f"  vgg16 {size}px: later trials, uncached / cached trial time: "
                  f"{_median(ratios)}")
        print(f"  vgg16 {size}px: extractor runs in the cached trials: "
              f"{sum(r['computed'] for r in cac)}, cache reads: {sum(r['loaded'] for r in cac)}")
        rss = [u["peak_rss_mb"] / c["peak_rss_mb"] for u, c in zip(unc, cac, strict=True)]
        print(f"  vgg16 {size}px: peak RSS, uncached / cached: {_median(rss)}")
    print(f"  feature cache on disk: {feature_mb:.2f} MB")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(
            {"source": source, "args": {k: str(v) for k, v in vars(args).items()},
             "decode_s": decode, "image_cache_mb": cache_mb, "feature_cache_mb": feature_mb,
             "results": results}, indent=2))


if __name__ == "__main__":
    main()
