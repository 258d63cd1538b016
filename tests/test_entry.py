"""entry.run: the one way every command starts and ends (one `error:` line, exit 1)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

_COMMAND = textwrap.dedent("""
    import errno, os, sys
    import entry
    from entry.errors import ProjectError
    what = sys.argv.pop()
    def main(argv):
        if what == "project":
            raise ProjectError("--x: bad; use --y")
        if what == "full":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/out/report.json")
        raise KeyError("a bug")
    entry.run(main)
""")


def run(what: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _COMMAND, what], capture_output=True, text=True, timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("what, line", [
    ("project", "error: --x: bad; use --y"),
    ("full", "error: cannot write /out/report.json (No space left on device); free space on that disk "
             "(or choose a writable one), then rerun the same command"),
])
def test_user_fixable_failures_end_in_one_line_and_status_1(what, line):
    result = run(what)
    assert result.returncode == 1 and result.stderr.strip() == line, result.stderr


@pytest.mark.slow
def test_a_bug_still_shows_its_traceback():
    result = run("bug")
    assert result.returncode == 1 and "Traceback" in result.stderr and "KeyError: 'a bug'" in result.stderr
