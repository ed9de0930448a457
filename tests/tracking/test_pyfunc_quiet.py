"""The logged model's class defines and loads without MLflow's yellow type-hint warning.

MLflow warns at every definition of a ``PythonModel`` subclass whose ``predict`` has no
type hints; tunelab's class is pickled by value into the model, so it is defined again in
every process that loads the model (``tunelab predict``, a user's ``load_model``). Both
steps run in fresh interpreters: a warning shown once per process would hide in this one.
"""

from __future__ import annotations

import subprocess
import sys

DEFINE = """
import warnings, cloudpickle
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    from tunelab.tracking import pyfunc_model
    cloudpickle.register_pickle_by_value(pyfunc_model)
    blob = cloudpickle.dumps((pyfunc_model.ImageClassifier, pyfunc_model.EnsembleClassifier))
open(sys.argv[1], "wb").write(blob)
print([str(w.message) for w in caught if "type hints" in str(w.message)])
"""

LOAD = """
import warnings, cloudpickle
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    classes = cloudpickle.loads(open(sys.argv[1], "rb").read())
assert [c.__name__ for c in classes] == ["ImageClassifier", "EnsembleClassifier"], classes
print([str(w.message) for w in caught if "type hints" in str(w.message)])
"""


def _run(code: str, path) -> str:
    done = subprocess.run([sys.executable, "-c", "import sys\n" + code, str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_model_class_defines_and_unpickles_without_the_type_hint_warning(tmp_path):
    blob = tmp_path / "classes.pkl"
    assert _run(DEFINE, blob) == "[]"
    assert _run(LOAD, blob) == "[]"
