"""``tune``'s checks of a config against its data load no Keras (issue #21): the model
families declare their specs without it (``models/lazy.py``), so the TensorFlow import on the
path to the first epoch is the worker's alone, which runs beside these checks. A real
interpreter each time: what is imported is read from its ``sys.modules``."""

import json
import subprocess
import sys
import textwrap

CHECK = textwrap.dedent("""
    import json, sys
    from tunelab.config import ConfigError, config_from_dict
    from tunelab.wiring import load_data, resolve_for_data
    from tunelab.validation import validate_against_data
    raw = json.loads(sys.argv[1])
    config = config_from_dict(raw)
    data = load_data(config)
    config = resolve_for_data(config, data)
    try:
        validate_against_data(config, data)
        verdict = "ok"
    except ConfigError as err:
        verdict = str(err)
    print(json.dumps({"verdict": verdict, "keras": "keras" in sys.modules,
                      "tensorflow": "tensorflow" in sys.modules}))
    """)


def _check(tmp_path, raw: dict) -> dict:
    result = subprocess.run([sys.executable, "-c", CHECK, json.dumps(raw)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_the_default_study_is_checked_without_keras(tmp_path):
    assert _check(tmp_path, {}) == {"verdict": "ok", "keras": False, "tensorflow": False}


def test_a_family_space_is_checked_and_refused_without_keras(tmp_path):
    raw = {"dataset": {"source": "digits", "image_size": 16},
           "space": {"model": ["lenet", "alexnet", "resnet8", "vgg16", "transfer"]}}
    found = _check(tmp_path, raw)
    assert "vgg16" in found["verdict"] and "32x32" in found["verdict"], found
    assert not found["keras"] and not found["tensorflow"], found
    raw["space"]["model"] = ["lenet", "alexnet", "resnet8", "mlp"]
    assert _check(tmp_path, raw) == {"verdict": "ok", "keras": False, "tensorflow": False}
