"""Between trials: the imports' objects are frozen once, so clear_session's collection is short."""

import subprocess
import sys
import textwrap


def test_the_first_reset_freezes_the_imports_once_and_later_models_are_still_freed():
    script = textwrap.dedent("""
        import gc, weakref
        import numpy as np
        from tunelab.models import build_model
        from tunelab.models.training import reset_session
        assert gc.get_freeze_count() == 0
        reset_session(1)
        frozen = gc.get_freeze_count()
        assert frozen > 100_000, frozen  # TensorFlow's and Keras' objects
        model = build_model("lenet", (8, 8, 1), 3, loss="categorical_crossentropy")
        model.compile("adam", "categorical_crossentropy")
        model.fit(np.zeros((8, 8, 8, 1)), np.eye(3)[[0, 1, 2, 0, 1, 2, 0, 1]], verbose=0)
        gone = weakref.ref(model)
        del model
        reset_session(2)
        # frozen once, not at every trial (a second freeze would add the trial's objects;
        # frozen ones freed by reference counting leave the count)
        assert gc.get_freeze_count() <= frozen
        assert gone() is None, "the previous trial's model was not collected"
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")
