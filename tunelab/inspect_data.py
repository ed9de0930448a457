"""``tunelab data inspect``: what a dataset holds before anyone trains on it.

Class counts per split, the image sizes, channels, bit depths and formats seen, warnings for
class imbalance and for identical images in two splits (a leak), and a PNG grid of samples
per class. The images are decoded, checked and split exactly as a study would.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

IMBALANCE_RATIO = 3.0  # warn when the largest class is this many times the smallest


def inspect_dataset(source: str, *, image_size: int | None = 64, color_mode: str = "grayscale",
                    validation_fraction: float = 0.2, test_fraction: float = 0.0,
                    seed: int = 0, label_pattern: str | None = None,
                    labels_csv: str | None = None, group_pattern: str | None = None,
                    skip_bad_images: bool = False, max_image_pixels: int | None = None,
                    samples_per_class: int = 8,
                    grid_path: str | Path | None = None,
                    class_names: list[str] | None = None) -> dict[str, Any]:
    """Load ``source`` as a study would and describe it; writes the sample grid PNG."""
    from tunelab.models.data import load_dataset
    from tunelab.models.data.images import DEFAULT_MAX_PIXELS

    if max_image_pixels is not None and max_image_pixels < 1:
        from tunelab.models.data import DataError

        raise DataError(f"--max-image-pixels: {max_image_pixels} must be > 0")
    data = load_dataset(source, image_size=image_size, color_mode=color_mode,
                        validation_fraction=validation_fraction, test_fraction=test_fraction,
                        seed=seed, label_pattern=label_pattern, labels_csv=labels_csv,
                        group_pattern=group_pattern, skip_bad_images=skip_bad_images,
                        max_image_pixels=max_image_pixels or DEFAULT_MAX_PIXELS,
                        class_names=class_names)
    counts = data.class_counts()
    warnings: list[str] = []
    train = counts["train"]
    largest, smallest = max(train.values()), min(train.values())
    if smallest == 0 or largest / smallest >= IMBALANCE_RATIO:
        rare = min(train, key=train.get)
        warnings.append(f"class imbalance: {max(train, key=train.get)!r} has {largest} training "
                        f"images, {rare!r} {smallest} (ratio {largest / max(smallest, 1):.1f}); "
                        "consider space.class_weight: [none, balanced] and "
                        "objective.metric: val_balanced_accuracy")
    duplicates = cross_split_duplicates(data)
    for (a, b), n in duplicates.items():
        warnings.append(f"{n} image(s) of {a} also appear in {b} (identical pixels): a leak "
                        "that inflates validation scores")
    if data.info.get("n_skipped"):
        warnings.append(f"{data.info['n_skipped']} unreadable image(s) skipped")
    grid_path = Path(grid_path or f"{data.name}_samples.png")
    _write_grid(data, samples_per_class, grid_path, seed)
    return {"name": data.name, "source": data.info.get("source", source),
            "kind": data.info.get("kind"), "class_names": list(data.class_names),
            "class_counts": counts, "input_shape": list(data.input_shape),
            "image_sizes": data.info.get("image_sizes", {}),
            "channels": data.info.get("channels", {}),
            "bit_depths": data.info.get("bit_depths", {}),
            "formats": data.info.get("formats", {}),
            "duplicates": {f"{a}/{b}": n for (a, b), n in duplicates.items()},
            "warnings": warnings, "grid": str(grid_path)}


def cross_split_duplicates(data) -> dict[tuple[str, str], int]:
    """Images with identical pixels (after decoding and resizing) in two splits."""
    hashes = {}
    for name in ("train", "val", "test"):
        split = getattr(data, name)
        if split is not None:
            hashes[name] = {hashlib.sha1(np.round(np.asarray(img) * 255).astype("uint8")
                                         .tobytes()).hexdigest() for img in split.x}
    out = {}
    names = list(hashes)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = len(hashes[a] & hashes[b])
            if shared:
                out[(a, b)] = shared
    return out


def _write_grid(data, per_class: int, path: Path, seed: int) -> None:
    from tunelab.tracking import plots

    rng = np.random.default_rng(seed)
    rows = []
    for c in range(data.n_classes):
        members = np.flatnonzero(data.train.y == c)
        pick = np.sort(rng.choice(members, size=min(per_class, len(members)), replace=False))
        row = np.zeros((per_class,) + data.input_shape, dtype="float32")
        row[:len(pick)] = np.asarray(data.train.x[pick])
        rows.append(row)
    fig = plots.image_grid(np.stack(rows), list(data.class_names),
                           f"{data.name}: training samples per class",
                           column_titles=[""] * per_class)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plots.close(fig)


def format_report(report: dict[str, Any]) -> str:
    from tunelab.text_table import table

    names = report["class_names"]
    splits = list(report["class_counts"])
    rows = [[c] + [report["class_counts"][s][c] for s in splits] for c in names]
    rows.append(["total"] + [sum(report["class_counts"][s].values()) for s in splits])
    lines = [f"dataset {report['name']} ({report['kind']}): {report['source']}",
             f"{len(names)} classes (index order): "
             + ", ".join(f"{i}={c}" for i, c in enumerate(names)), "",
             table(["class"] + splits, rows), "",
             f"model input: {tuple(report['input_shape'])}",
             "image sizes (WxH): " + _counts(report["image_sizes"]),
             "channels: " + _counts(report["channels"]),
             "bit depths: " + _counts(report["bit_depths"])]
    if report["formats"]:
        lines.append("formats: " + _counts(report["formats"]))
    lines += [f"warning: {w}" for w in report["warnings"]]
    lines.append(f"sample grid: {report['grid']}")
    return "\n".join(lines)


def _counts(counts: dict) -> str:
    return ", ".join(f"{k} ({v})" for k, v in counts.items()) or "-"
