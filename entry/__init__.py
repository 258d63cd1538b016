"""The one way every command starts: `entry.run(main, define_flags)` for the
absl-flag commands, `entry.run_parsed(main, parser)` for the argparse one
(`python -m ingest.sample`, whose --face_px MIN MAX takes two values).

Each `__main__` (and each module run with `python -m`) imports this package
before anything else, so `TF_CPP_MIN_LOG_LEVEL=2` is in the environment before
any module imports TensorFlow (it reads the variable once, at import). That level
hides TensorFlow's C++ INFO and WARNING lines once its logging is set up; what
TensorFlow 2.21 prints while it loads, before absl's C++ logging starts ("oneDNN
custom operations are on", "Could not find cuda drivers") and the `failed call to
cuInit` error of a CPU machine, `entry.startup_notices` filters out of stderr
while TensorFlow loads and lists its devices (DEX_TF_STARTUP_LOGS=1 shows them;
every other line passes). `run` defines and
adopts the command's flags (so `--help` lists them), parses them before the command
imports TensorFlow (`check_flags`: a flag mistake, and with its `check` a path of the
wrong kind, answers at once) and quiets absl's
Python INFO chatter unless -v/--verbosity asks for it. Both turn a `ProjectError` (bad input
the user can fix) into one `error: ...` line and exit status 1, and so does a write
that meets a full or read-only disk anywhere; Ctrl-C is one `interrupted: ...` line
saying what is kept and how to go on, exit status 130 (`entry.interrupt`).
Before anything else, `entry._deps` checks that the project's dependencies are
importable (one line naming the fix when they are not).

This package never imports TensorFlow: ingest, which must not load it, uses it too.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from entry import _deps  # noqa: E402  (standard library only: runs where the dependencies are missing)

_deps.require()

from absl import app, flags, logging  # noqa: E402  (after the environment variable, on purpose)

from entry import interrupt, startup_notices  # noqa: E402
from errors import ProjectError, disk_problem, disk_target  # noqa: E402

startup_notices.install()
interrupt.install()

__all__ = ["ProjectError", "interrupt", "one_line", "run", "run_parsed"]


def one_line(main: Callable, *args):
    """`main(*args)`; a ProjectError, or a write that met a full or read-only disk,
    ends the process with one `error: ...` line on stderr and exit status 1, Ctrl-C
    with one `interrupted: ...` line and status 130 (entry.interrupt).
    Any other exception (a bug) keeps its traceback."""
    try:
        return main(*args)
    except KeyboardInterrupt:
        interrupt.stop()
    except ProjectError as e:
        sys.exit(f"error: {e}")
    except Exception as e:
        problem = disk_problem(e)
        if problem is None:
            raise
        sys.exit(f"error: cannot write {disk_target(e)} ({problem}); free space on that disk "
                 f"(or choose a writable one), then rerun the same command")


def only_flags(argv: list[str]) -> None:
    """A command that takes no positional arguments refuses them in one line (a `check`
    for check_flags, or the first line of its main)."""
    if len(argv) > 1:
        raise ProjectError(f"unexpected arguments {argv[1:]}; every option is a --flag (see --help)")


# The arguments left after check_flags parsed the command line (None: not parsed yet).
_remaining: list[str] | None = None


def check_flags(define_flags: Callable[[], None] | None = None, flags_module=None,
                check: Callable[[list[str]], None] | None = None) -> None:
    """Define the command's absl flags and parse sys.argv now: a mistyped or missing
    flag, a bad value or --help answers before the command imports TensorFlow, and so
    does what `check(argv)` raises (values no flag type checks; one `error: ...` line).
    A command module that imports TensorFlow at its top calls this first, under
    `if __name__ == "__main__":`; `run` then uses this parse instead of parsing again."""
    global _remaining
    if _remaining is not None:
        return
    if define_flags is not None:
        define_flags()
    if flags_module is not None:          # so --help lists them (help shows sys.argv[0]'s key flags)
        for flag in flags.FLAGS.get_key_flags_for_module(flags_module):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    app.define_help_flags()
    _remaining = app.parse_flags_with_usage(sys.argv)
    if check is not None:
        one_line(check, _remaining)


def run(main: Callable[[list[str]], int | None], define_flags: Callable[[], None] | None = None,
        flags_module=None) -> None:
    """Define the command's absl flags and parse argv (unless check_flags did), then run
    `main(argv)`; its return value is the exit status, a ProjectError one `error: ...`
    line and status 1.  `main` should import TensorFlow itself (inside it), so a flag
    mistake never waits for it."""
    check_flags(define_flags, flags_module)

    def guarded(argv: list[str]):
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)
        return one_line(main, argv)

    app.run(guarded, flags_parser=lambda argv: _remaining)


def run_parsed(main: Callable[[argparse.Namespace], int | None], parser: argparse.ArgumentParser,
               argv: list[str] | None = None) -> None:
    """The same for an argparse command: parse `argv` (default sys.argv[1:]; a usage
    error is argparse's own, status 2), run `main(args)` and exit with its return
    value, a ProjectError one `error: ...` line and status 1."""
    args = parser.parse_args(argv)
    sys.exit(one_line(main, args))
