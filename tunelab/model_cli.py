"""Subcommands after a study: ``best``, ``register``, ``evaluate``, ``predict``,
``continue``, ``ablate``.

Kept out of ``cli.py`` so that file stays a short list of commands; like it, this module only
parses and calls the library functions in ``tunelab.registering``.
"""

from __future__ import annotations

import argparse

COMMANDS = ("best", "register", "evaluate", "report", "predict", "continue", "ablate")


def _study_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study-name", help="the study (default: the only one in the storage)")
    parser.add_argument("--storage", help="Optuna storage: journal file or database URL "
                        "(default: mlruns/optuna.journal)")


def add_parsers(sub) -> None:
    best = sub.add_parser(
        "best", help="rank a study's trials and select the one to trust",
        description="Rank the complete trials by objective and select the best one whose "
        "train-validation accuracy gap is within objective.gap_tolerance and whose validation "
        "loss was not rising while training loss fell; say why each top trial was or was not "
        "chosen.")
    _study_flags(best)

    reg = sub.add_parser(
        "register", help="log, register and promote the selected trial's model",
        description="Produce the selected trial's model (from its checkpoint, or retrained "
        "with its seed and hyperparameters), log it to MLflow with its preprocessing, register "
        "a new version of NAME and point the alias 'champion' at it unless it scores worse "
        "than the current champion on the same validation images.")
    _study_flags(reg)
    reg.add_argument("--name", required=True, help="registered model name")
    reg.add_argument("--force", action="store_true",
                     help="move 'champion' even to a worse version; with no trial passing the "
                     "rule, register the best objective")
    reg.add_argument("--ensemble", type=int, metavar="K", default=None,
                     help="register the mean of the top K confirmed candidates' probabilities "
                     "as one model (K >= 2; a confirm_* selection); default registry.ensemble "
                     "(1: the single pick)")

    ev = sub.add_parser(
        "evaluate", help="clinical evaluation of a registered model on a test split",
        description="ROC AUC, accuracy, balanced accuracy and per-class sensitivity, "
        "specificity, PPV and NPV with 95 percent stratified bootstrap intervals, at the model's "
        "stored threshold and at 0.5; ECE before and after calibration; ROC, precision-recall, "
        "reliability and confusion figures; logged to an evaluation run linked to the model "
        "version, the headline as version tags, the model card as its description. The data "
        "are split as the model's study split them (its config from --storage); --dataset "
        "replaces the source.")
    ev.add_argument("model_uri", help="models:/NAME@champion, models:/NAME/3")
    ev.add_argument("--dataset", help="dataset.source to evaluate on (default: the study's)")
    ev.add_argument("--split", default="test", choices=("test", "val"),
                    help="the split to evaluate (default: test; val is the split calibration "
                    "was fitted on, so its ECE is optimistic)")
    ev.add_argument("--tracking-uri", help="MLflow store (default: sqlite:///mlruns/mlflow.db)")
    _study_flags(ev)

    rep = sub.add_parser(
        "report", help="one self-contained HTML report of one or more studies",
        description="Write one offline HTML file (images embedded): what was searched, a "
        "table of every trial, the top trials' curves, the variants of a grid study, the "
        "selection and its reasons, and the champion's evaluation; several studies side by "
        "side. Also logged to each study's parent MLflow run.")
    rep.add_argument("studies", nargs="*", metavar="STUDY",
                     help="study names (default: the only study in the storage)")
    rep.add_argument("-o", "--output", default="report.html", help="default: report.html")
    rep.add_argument("--storage", help="Optuna storage: journal file or database URL "
                     "(default: mlruns/optuna.journal)")
    rep.add_argument("--tracking-uri", help="MLflow store (default: the study's)")

    pred = sub.add_parser(
        "predict", help="classify image files with a registered model",
        description="Predict image files and folders (searched recursively) with a model URI "
        "such as models:/NAME@champion; prints the label and class probabilities per file.")
    pred.add_argument("model_uri", help="models:/NAME@champion, models:/NAME/3, runs:/ID/model")
    pred.add_argument("paths", nargs="+", help="image files or folders")
    pred.add_argument("--tracking-uri", help="MLflow store (default: sqlite:///mlruns/mlflow.db)")
    pred.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    pred.add_argument("--skip-bad-images", action="store_true",
                      help="leave out unreadable files and files above the pixel limit, "
                      "naming each on stderr (default: such a file is an error)")
    pred.add_argument("--max-image-pixels", type=int,
                      help="refuse larger images (default 89478485, Pillow's limit; raise it "
                      "for large radiographs)")

    cont = sub.add_parser(
        "continue", help="resume training a trial from its checkpoint",
        description="Load a trial's saved weights and optimizer state, train E more epochs, "
        "log them to the trial's MLflow run and save the checkpoint back.")
    _study_flags(cont)
    cont.add_argument("--trial", type=int, required=True, help="trial number")
    cont.add_argument("--epochs", type=int, required=True, help="epochs to add")

    abl = sub.add_parser(
        "ablate", help="retrain the champion with one knob changed at a time, same seeds",
        description="Retrain the study's champion (the trial `tunelab best` selects, or "
        "--trial N) once per variant of each KNOB, one knob changed at a time, every variant "
        "with the same seeds; log each training as an ablation run nested under the study's "
        "parent run; draw per knob the variants' train (solid) and validation (dashed) curves "
        "(mean and band over seeds) with a table: best and final validation metric, gap, the "
        "epoch each variant first reaches the base variant's final training accuracy, and the "
        "effect against the base with its spread across seeds.",
        epilog="knobs: batch_norm, dense_batch_norm (on/off), dropout (0, 0.2, 0.4), "
        "learning_rate (x10, /10), n_base (halved, doubled), augmentation (on/off), any "
        "searched parameter (the values of its dimension), or NAME=V1,V2 for any parameter "
        "(e.g. optimizer=adam,sgd or dense_units=128-64,256-64).")
    _study_flags(abl)
    abl.add_argument("knobs", nargs="+", metavar="KNOB", help="knob to vary (see below)")
    abl.add_argument("--trial", type=int, help="trial to ablate (default: the champion)")
    abl.add_argument("--n-seeds", type=int, default=3,
                     help="seeds per variant: the trial's own seed and the next ones "
                     "(default: 3)")
    abl.add_argument("--seeds", help="explicit seeds, comma-separated (overrides --n-seeds)")
    abl.add_argument("--epochs", type=int,
                     help="epochs per training (default: the study's max_epochs)")
    abl.add_argument("--early-stopping", action="store_true",
                     help="keep the study's early stopping (default: off, so every variant "
                     "trains the same epochs and the curves compare epoch by epoch)")
    abl.add_argument("--output-dir", help="figures, tables and report.md (default: "
                     "ablations/<study>/trial-<N>/ beside the journal)")


def run(args: argparse.Namespace) -> int:
    from tunelab import registering

    if args.command == "best":
        selection = registering.best(args.study_name, args.storage)
        registering.print_selection(selection)
        return 0 if selection.chosen is not None else 3
    if args.command == "register":
        if args.ensemble is not None and args.ensemble < 1:
            from tunelab.config import ConfigError

            raise ConfigError(f"--ensemble: {args.ensemble} must be >= 1")
        registering.register(args.name, args.study_name, args.storage, force=args.force,
                             ensemble=args.ensemble)
        return 0
    if args.command == "evaluate":
        registering.evaluate_model(args.model_uri, args.dataset, args.split,
                                   tracking_uri=args.tracking_uri, study_name=args.study_name,
                                   storage=args.storage)
        return 0
    if args.command == "report":
        from tunelab.reporting import report

        report(args.studies, args.storage, args.output, args.tracking_uri)
        return 0
    if args.command == "predict":
        frame = registering.predict(args.model_uri, args.paths, args.tracking_uri,
                                    skip_bad_images=args.skip_bad_images,
                                    max_image_pixels=args.max_image_pixels)
        if args.csv:
            print(frame.to_csv(index=False, float_format="%.6g"), end="")
        else:
            from tunelab.text_table import table

            print(table(list(frame.columns), frame.itertuples(index=False)))
        return 0
    if args.command == "continue":
        registering.continue_training(args.trial, args.epochs, args.study_name, args.storage)
        return 0
    if args.command == "ablate":
        from tunelab.ablating import ablate
        from tunelab.config import ConfigError

        try:
            seeds = ([int(s) for s in args.seeds.split(",") if s.strip()] if args.seeds
                     else None)
        except ValueError:
            raise ConfigError(f"--seeds: {args.seeds!r} is not a comma-separated list of "
                              "integers") from None
        ablate(args.knobs, args.study_name, args.storage, trial=args.trial,
               n_seeds=args.n_seeds, seeds=seeds, epochs=args.epochs,
               early_stopping=args.early_stopping, output_dir=args.output_dir)
        return 0
    raise ValueError(f"not a lifecycle command: {args.command}")
