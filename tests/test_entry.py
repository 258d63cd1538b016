"""entry.run: the one way every command starts and ends (one `error:` line, exit 1)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

_COMMAND = textwrap.dedent("""
    import errno, os, sys
    import entry
    from errors import ProjectError
    what = sys.argv.pop()
    def main(argv):
        if what == "project":
            raise ProjectError("--x: bad; use --y")
        if what == "full":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/out/report.json")
        raise KeyError("a bug")
    entry.run(main)
""")


# The same failures from an argparse command started with entry.run_parsed.
_PARSED = textwrap.dedent("""
    import argparse, errno, os
    import entry
    from errors import ProjectError
    def main(args):
        if args.what == "project":
            raise ProjectError("--x: bad; use --y")
        if args.what == "full":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/out/report.json")
        if args.what == "status":
            return 3
        raise KeyError("a bug")
    parser = argparse.ArgumentParser(prog="cmd")
    parser.add_argument("what", choices=["project", "full", "status", "bug"])
    entry.run_parsed(main, parser)
""")


def run(what: str, command: str = _COMMAND) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", command, what], capture_output=True, text=True, timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("what, line", [
    ("project", "error: --x: bad; use --y"),
    ("full", "error: cannot write /out/report.json (No space left on device); free space on that disk "
             "(or choose a writable one), then rerun the same command"),
])
@pytest.mark.parametrize("command", [_COMMAND, _PARSED], ids=["absl", "argparse"])
def test_user_fixable_failures_end_in_one_line_and_status_1(what, line, command):
    result = run(what, command)
    assert result.returncode == 1 and result.stderr.strip() == line, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("command", [_COMMAND, _PARSED], ids=["absl", "argparse"])
def test_a_bug_still_shows_its_traceback(command):
    result = run("bug", command)
    assert result.returncode == 1 and "Traceback" in result.stderr and "KeyError: 'a bug'" in result.stderr


@pytest.mark.slow
def test_an_argparse_command_exits_with_mains_status_and_its_usage_errors_are_argparses():
    assert run("status", _PARSED).returncode == 3
    usage = run("nonsense", _PARSED)
    assert usage.returncode == 2 and "usage: cmd" in usage.stderr and "invalid choice" in usage.stderr
