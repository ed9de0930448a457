"""The per-epoch validation pass: ``model.predict`` against ``predict_in_batches``.

Every epoch, ``models.metrics.ValidationMetrics`` predicts the validation split for the
per-class metrics and ``val_auc``. ``model.predict`` sets up a data adapter, an epoch
iterator and its callbacks on every call, which for a few hundred small images costs more
than the compute; ``predict_in_batches`` calls the model's one predict function per batch.
Both are timed alternately in one process on a LeNet-sized model (the digits default's
input, 16x16x1, and BreastMNIST's 28x28x1), after a warm-up call of each, and the outputs
are checked to agree.

    python benchmarks/validation_pass.py            # 300 calls each, two input sizes
    python benchmarks/validation_pass.py --quick    # 20 calls, 16x16 only
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def measure(side: int, n_images: int, calls: int) -> dict:
    import keras
    import numpy as np

    from tunelab.models import build_model
    from tunelab.models.metrics import predict_in_batches

    model = build_model("lenet", (side, side, 1), 2 if side == 28 else 10, n_base=16,
                        dense_units=64)
    x = np.random.default_rng(0).random((n_images, side, side, 1), dtype="float32")
    np.testing.assert_allclose(model.predict(x, batch_size=256, verbose=0),
                               predict_in_batches(model, x, 256), atol=1e-5)
    a, b = [], []
    for _ in range(calls):
        t = time.perf_counter()
        model.predict(x, batch_size=256, verbose=0)
        a.append(time.perf_counter() - t)
        t = time.perf_counter()
        predict_in_batches(model, x, 256)
        b.append(time.perf_counter() - t)
    keras.backend.clear_session()
    return {"side": side, "images": n_images, "predict_ms": 1000 * statistics.median(a),
            "batches_ms": 1000 * statistics.median(b),
            "ratio": statistics.median(a) / statistics.median(b)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args(argv)
    cases = [(16, 288)] if args.quick else [(16, 288), (28, 78)]
    calls = 20 if args.quick else args.calls
    print("input      images  model.predict (median ms)  predict_in_batches  ratio")
    for side, n in cases:
        r = measure(side, n, calls)
        print(f"{side}x{side}x1  {n:7d}  {r['predict_ms']:25.1f}  {r['batches_ms']:18.1f}  "
              f"{r['ratio']:5.2f}")
    print(f"calls per case: {calls}, alternated")


if __name__ == "__main__":
    main()
