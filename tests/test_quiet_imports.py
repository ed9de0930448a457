"""Quiet mode keeps the C++ lines TensorFlow prints at import off the terminal, also where
TF_CPP_MIN_LOG_LEVEL does not reach them (oneDNN on by itself on AVX512-VNNI / AVX-VNNI
CPUs: absl's preamble and "oneDNN custom operations are on"), and lets every other line of
that import through, in order. Real subprocesses, real file descriptor 2."""

import subprocess
import sys
import textwrap

import pytest

NOISE = ("WARNING: All log messages before absl::InitializeLog() is called are written to "
         "STDERR\n"
         "I0000 00:00:1796195721.213871    4033 port.cc:153] oneDNN custom operations are on. "
         "You may see slightly different numerical results.\n"
         "W0000 00:00:1796195721.313871    4033 cpu_feature_guard.cc:227] a warning\n")


def _run(tmp_path, verbose: bool, module: str = "noisy_fake") -> subprocess.CompletedProcess:
    (tmp_path / "noisy_fake.py").write_text(textwrap.dedent(f"""
        import os, sys
        os.write(2, {NOISE!r}.encode())
        print("python's own stderr line", file=sys.stderr)
        os.write(2, b"E0000 00:00:1796195721.413871    4033 loader.cc:1] a real error\\n")
        """))
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from tunelab import quiet
        quiet.NOISY_IMPORTS.append("noisy_fake")
        quiet.configure({verbose})
        import {module}
        print("imported")
        """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)


def test_quiet_mode_drops_absl_info_and_warning_lines_of_a_noisy_import(tmp_path):
    result = _run(tmp_path, verbose=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "imported\n"
    assert result.stderr == ("python's own stderr line\n"
                             "E0000 00:00:1796195721.413871    4033 loader.cc:1] a real error\n")


def test_verbose_mode_shows_them(tmp_path):
    result = _run(tmp_path, verbose=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(NOISE), result.stderr


def test_a_failing_noisy_import_still_shows_its_traceback(tmp_path):
    (tmp_path / "noisy_broken.py").write_text("import os\nos.write(2, b'I0000 00:00:1.0 1 "
                                              "x.cc:1] info\\n')\nraise ImportError('boom')\n")
    code = (f"import sys; sys.path.insert(0, {str(tmp_path)!r}); from tunelab import quiet; "
            "quiet.NOISY_IMPORTS.append('noisy_broken'); quiet.configure(False); "
            "import noisy_broken")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1
    assert "ImportError: boom" in result.stderr and "x.cc:1] info" not in result.stderr


@pytest.mark.parametrize("module", ["tensorflow", "keras"])
def test_importing_tensorflow_in_quiet_mode_prints_nothing(tmp_path, module):
    result = _run(tmp_path, verbose=False, module=module)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr


def test_with_stderr_closed_the_import_runs_unfiltered(tmp_path):
    (tmp_path / "noisy_fake.py").write_text("import os\nos.write(1, b'body ran\\n')\n")
    code = (f"import sys; sys.path.insert(0, {str(tmp_path)!r}); from tunelab import quiet; "
            "quiet.NOISY_IMPORTS.append('noisy_fake'); quiet.configure(False); "
            "import noisy_fake; print('imported')")
    result = subprocess.run(f"{sys.executable} -c \"{code}\" 2>&-", shell=True,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0
    assert result.stdout == "body ran\nimported\n"


def test_a_process_that_dies_importing_leaves_what_it_printed_for_tune(tmp_path):
    """An abort inside the import (TensorFlow's LOG(FATAL), an unsupported CPU) would take
    the held lines with it: they stay in the held file, and tune shows a dead worker's."""
    (tmp_path / "noisy_fake.py").write_text(
        "import os\nos.write(2, b'I0000 00:00:1.0 1 x.cc:1] info\\nF0000 00:00:1.0 1 "
        "y.cc:2] Check failed: boom\\n')\nos.abort()\n")
    code = (f"import sys; sys.path.insert(0, {str(tmp_path)!r}); from tunelab import quiet; "
            "quiet.NOISY_IMPORTS.append('noisy_fake'); quiet.configure(False); "
            "import noisy_fake")
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -6 and "boom" not in err
    from tunelab.tuning import died_importing

    said = died_importing(proc.pid)
    assert "Check failed: boom" in said and said.startswith("; it died importing"), said
    assert died_importing(proc.pid) == ""  # read once, then removed
