"""``tunelab data inspect SOURCE``: parse, then call ``tunelab.inspect_data``."""

from __future__ import annotations

import argparse
from typing import Any

COMMANDS = ("data",)


def add_parsers(sub: Any) -> None:
    data = sub.add_parser("data", help="look at a dataset before tuning on it",
                          description="Look at a dataset before tuning on it.")
    actions = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    inspect = actions.add_parser(
        "inspect", help="class counts, image sizes, bit depths, imbalance and leaks",
        description="Decode and check every image of SOURCE as a study would, print class "
        "counts per split, sizes, channels and bit depths seen, warn about class imbalance "
        "and identical images across splits, and write a PNG grid of samples per class.")
    inspect.add_argument("source", help="digits, a .npz, an image folder, a CIFAR-10 folder or "
                         "a CSV of path,label")
    inspect.add_argument("--image-size", type=int, default=64,
                         help="side of the resized images in the grid")
    inspect.add_argument("--color-mode", choices=("grayscale", "rgb"), default="grayscale",
                         help="convert every image to grey or RGB")
    inspect.add_argument("--validation-fraction", type=float, default=0.2,
                         help="stratified validation split when the source has none")
    inspect.add_argument("--test-fraction", type=float, default=0.0,
                         help="stratified test hold-out carved first when the source has none")
    inspect.add_argument("--label-pattern", help="regex with a named group 'label' on file "
                         "names (default: labels from the folder names)")
    inspect.add_argument("--labels-csv", help="CSV of path,label (default: labels from the "
                         "folder names)")
    inspect.add_argument("--group-pattern", help="regex on file paths, e.g. a patient id, that "
                         "keeps each group in one split (default: no groups)")
    inspect.add_argument("--skip-bad-images", action="store_true",
                         help="skip unreadable images and images above the pixel limit, "
                         "with a count (default: such a file is an error naming it)")
    inspect.add_argument("--max-image-pixels", type=int,
                         help="refuse larger images (default 89478485, Pillow's limit; as "
                         "dataset.max_image_pixels)")
    inspect.add_argument("--class-names", help="a .npz's class ids 0, 1, ... by name, "
                         "comma-separated, in id order, as dataset.class_names (default: the "
                         "ids themselves)")
    inspect.add_argument("--samples", type=int, default=8, help="images per class in the grid")
    inspect.add_argument("--out", help="PNG path (default: <name>_samples.png)")
    inspect.add_argument("--seed", type=int, default=0, help="seed of the splits")


def run(args: argparse.Namespace) -> int:
    from tunelab.config import ConfigError
    from tunelab.inspect_data import format_report, inspect_dataset
    from tunelab.models.data import DataError

    try:
        report = inspect_dataset(
            args.source, image_size=args.image_size, color_mode=args.color_mode,
            validation_fraction=args.validation_fraction, test_fraction=args.test_fraction,
            seed=args.seed, label_pattern=args.label_pattern, labels_csv=args.labels_csv,
            group_pattern=args.group_pattern, skip_bad_images=args.skip_bad_images,
            max_image_pixels=args.max_image_pixels, samples_per_class=args.samples,
            grid_path=args.out,
            class_names=args.class_names.split(",") if args.class_names else None)
    except DataError as err:
        raise ConfigError(str(err)) from None
    print(format_report(report))
    return 0
