"""A CLI study's end, with and without its figures' imports warmed up while the last trials
train, side by side.

``tunelab tune`` draws the study figures and the interactive page in its own process at the
study's end (its workers and their tracking writers have exited by then). Before the study
end it has not imported matplotlib or Plotly; ``search.study_plots.warm_up`` does that in a
thread once the last trials are under way (``TUNELAB_WARM_STUDY_END=0`` turns it off, for
this comparison). Each repeat runs the same small study twice (digits, LeNet, ``--quick``'s
or the given trials and epochs, tracked, fresh stores), warm then cold or cold then warm by
turns, and reads tunelab's timeline: the study end (from the search's and confirmation's
end to the parent run's last write) and the command's wall time.

    python benchmarks/study_end.py            # 5 repeats x 4 trials x 3 epochs
    python benchmarks/study_end.py --quick    # 1 repeat x 2 trials x 1 epoch
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


def run(folder: Path, warm: bool, trials: int, epochs: int) -> dict[str, float]:
    folder.mkdir(parents=True)
    (folder / "study.yaml").write_text(f"n_trials: {trials}\nmax_epochs: {epochs}\n"
                                       "selection: {method: best_validation}\n")
    timeline = folder / "timeline.jsonl"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TUNELAB_TIMELINE": str(timeline),
           "TUNELAB_WARM_STUDY_END": "1" if warm else "0"}
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "tunelab", "tune", "study.yaml"], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=900)
    wall = time.time() - start
    if proc.returncode != 0:
        raise SystemExit(proc.stdout[-2000:] + proc.stderr[-2000:])
    events = [json.loads(line) for line in timeline.read_text().splitlines()]
    first = {}
    for e in sorted(events, key=lambda e: e["t"]):
        first.setdefault(e["event"], e["t"])
    warmed = "study_end_warm_done" in first
    if warmed != warm:
        raise SystemExit(f"warm-up {'missing' if warm else 'ran though turned off'}")
    out = {"wall": wall, "study_end": first["study_end"] - first["study_end_start"]}
    if warm:  # done before the study end began: then the end waited for none of it
        out["warm_lead"] = first["study_end_start"] - first["study_end_warm_done"]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat, 2 trials x 1 epoch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    repeats, trials, epochs = ((1, 2, 1) if args.quick
                               else (args.repeats, args.trials, args.epochs))
    rows: dict[str, list[dict[str, float]]] = {"warm": [], "cold": []}
    with tempfile.TemporaryDirectory(prefix="tunelab-study-end-") as tmp:
        for rep in range(repeats):
            for name in (("warm", "cold") if rep % 2 == 0 else ("cold", "warm")):
                rows[name].append(run(Path(tmp) / f"{name}{rep}", name == "warm", trials,
                                      epochs))
            print(f"repeat {rep}: " + ", ".join(
                f"{n} study end {r[-1]['study_end']:.2f} s, wall {r[-1]['wall']:.1f} s"
                for n, r in rows.items()), flush=True)
    print(f"\n{repeats} repeat(s), {trials} trials x {epochs} epochs, digits, tracked; "
          f"load average at the end {os.getloadavg()[0]:.1f}")
    for name, values in rows.items():
        ends = [r["study_end"] for r in values]
        print(f"{name:<5} study end median {statistics.median(ends):.2f} s "
              f"[{min(ends):.2f}, {max(ends):.2f}]; wall median "
              f"{statistics.median(r['wall'] for r in values):.1f} s")
    ratios = [w["study_end"] / c["study_end"] for w, c in zip(rows["warm"], rows["cold"],
                                                              strict=True)]
    print(f"study end warm / cold: median {statistics.median(ratios):.3f} "
          f"[{min(ratios):.3f}, {max(ratios):.3f}]")
    walls = [w["wall"] / c["wall"] for w, c in zip(rows["warm"], rows["cold"], strict=True)]
    print(f"wall warm / cold: median {statistics.median(walls):.3f} "
          f"[{min(walls):.3f}, {max(walls):.3f}]")
    leads = [r["warm_lead"] for r in rows["warm"]]
    print(f"warm-up done before the study end began by: median {statistics.median(leads):.2f} s "
          f"[{min(leads):.2f}, {max(leads):.2f}] (negative: the end waited for it)")


if __name__ == "__main__":
    main()
