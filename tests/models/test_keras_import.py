"""A worker's Keras import skips Keras' optional scikit-learn and pandas integrations
(about 0.9 s of its start-up); everyone else still imports them, tunelab's folds included."""

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip()


def test_keras_loads_without_sklearn_and_pandas_and_they_still_import_after():
    out = _run("""
        import sys
        import tunelab.models.training  # TensorFlow and Keras
        import keras
        print("sklearn" in sys.modules, "pandas" in sys.modules)
        import sklearn.model_selection, pandas  # tunelab's folds, a user's code
        print(pandas.DataFrame({"a": [1]}).shape, sklearn.model_selection.StratifiedKFold(2))
        # Keras works on arrays as ever
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        print(model.predict(__import__("numpy").ones((4, 3)), verbose=0).shape)
    """)
    skipped, frame_and_folds, shape = out.splitlines()
    assert skipped == "False False"
    assert frame_and_folds.startswith("(1, 1) StratifiedKFold")
    assert shape == "(4, 2)"


def test_an_earlier_import_of_sklearn_is_what_keras_gets():
    out = _run("""
        import sys
        import sklearn, tunelab.models.training
        from keras.src.wrappers import fixes
        print(fixes.sklearn is sys.modules["sklearn"])
    """)
    assert out == "True"


def test_digits_read_without_sklearn_equal_load_digits():
    out = _run("""
        import sys
        import numpy as np
        from tunelab.models.data.sources import _digits
        found = _digits()
        print("sklearn" in sys.modules)
        from sklearn.datasets import load_digits
        bunch = load_digits()
        part = found.parts["train"]
        print(np.array_equal(part.x, (bunch.images / 16.0).astype("float32")),
              np.array_equal(part.y, bunch.target), part.x.dtype, part.y.dtype,
              found.class_names == tuple(str(n) for n in bunch.target_names))
    """)
    loaded, same = out.splitlines()
    assert loaded == "False"
    assert same == "True True float32 int64 True"
