"""entry.startup_notices: TensorFlow's start-up notices are hidden, every other line arrives."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from entry import startup_notices

# What TensorFlow 2.21 writes on a CPU machine while it loads and lists its devices.
NOTICES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796460749.585390   10629 port.cc:153] oneDNN custom operations are on. You may see "
    "slightly different numerical results due to floating-point round-off errors from different "
    "computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.",
    "I0000 00:00:1796460749.585714   10629 cudart_stub.cc:31] Could not find cuda drivers on your "
    "machine, GPU will not be used.",
    "E0000 00:00:1796460774.855519   11104 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA "
    "error: Failed call to cuInit: UNKNOWN ERROR (303)",
]
REAL = [
    "E0000 00:00:1796460774.855519   11104 op_kernel.cc:1857] OP_REQUIRES failed at save_restore: "
    "No space left on device",
    "Traceback (most recent call last):",
    "error: --records: no manifest.json; run python -m ingest first",
    "port.cc:153] oneDNN custom operations are on.",       # not absl's line: not the notice
]


def test_the_known_notices_match_and_other_lines_do_not():
    assert [startup_notices.is_notice(line) for line in NOTICES] == [True] * len(NOTICES)
    assert [startup_notices.is_notice(line) for line in REAL] == [False] * len(REAL)


def test_the_reader_forwards_every_other_line_in_order_and_a_last_partial_one():
    source_r, source_w = os.pipe()
    sink_r, sink_w = os.pipe()
    text = "\n".join([NOTICES[0], REAL[0], NOTICES[1], REAL[1], NOTICES[3], "no newline at the end"])
    os.write(source_w, text.encode())
    os.close(source_w)
    startup_notices._forward(source_r, sink_w)
    os.close(sink_w)
    with os.fdopen(sink_r, "rb") as sink:
        assert sink.read().decode() == f"{REAL[0]}\n{REAL[1]}\nno newline at the end"


_IMPORT = textwrap.dedent("""
    import os, sys
    import entry
    import tensorflow as tf
    tf.config.list_physical_devices()
    os.write(2, b"a line after TensorFlow\\n")
    os.write(2, sys.argv[1].encode() + b"\\n")     # a notice after start-up is not filtered
    if len(sys.argv) > 2:
        raise KeyError("a bug")
""")


def _run(*args, env=None):
    return subprocess.run([sys.executable, "-c", _IMPORT, NOTICES[1], *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


@pytest.mark.slow
def test_importing_tensorflow_through_entry_prints_no_start_up_notice():
    result = _run()
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["a line after TensorFlow", NOTICES[1]]


@pytest.mark.slow
def test_a_traceback_still_arrives():
    result = _run("bug")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and result.stderr.strip().endswith("KeyError: 'a bug'")
    assert "cudart_stub" not in result.stderr


@pytest.mark.slow
def test_the_environment_variable_shows_the_notices():
    result = _run(env={startup_notices.SHOW_ENV: "1"})
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert any(startup_notices.is_notice(line) and "oneDNN" in line for line in lines[:-2]), lines
    assert any("failed call to cuInit" in line for line in lines), lines


_ABORT = textwrap.dedent("""
    import os, sys
    from entry import startup_notices
    with startup_notices.filtered():
        os.write(2, (sys.argv[1] + "\\nF0000 a fatal line\\n").encode())
        os.abort()
""")


@pytest.mark.slow
def test_the_last_line_of_a_process_that_aborts_while_filtered_still_arrives():
    result = subprocess.run([sys.executable, "-c", _ABORT, NOTICES[2]], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0 and result.stderr.splitlines() == ["F0000 a fatal line"], result.stderr
