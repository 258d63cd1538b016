"""The one way every command starts: `entry.run(main, define_flags)`.

Each `__main__` (and each module run with `python -m`) imports this package
before anything else, so `TF_CPP_MIN_LOG_LEVEL` is set before any module
imports TensorFlow (it reads the variable once, at import). `run` defines and
adopts the command's flags (so `--help` lists them), quiets absl's INFO
chatter unless -v/--verbosity asks for it, and turns a `ProjectError` (bad
input the user can fix) into one `error: ...` line and exit status 1, and so
does a write that meets a full or read-only disk anywhere.

This package never imports TensorFlow: ingest, which must not load it, uses it too.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402  (after the environment variable, on purpose)

from entry.errors import ProjectError, disk_problem, disk_target  # noqa: E402

__all__ = ["ProjectError", "run"]


def run(main: Callable[[list[str]], int | None], define_flags: Callable[[], None] | None = None,
        flags_module=None) -> None:
    """Define the command's flags, parse argv, run `main`; a ProjectError ends the
    process with one `error: ...` line on stderr and exit status 1."""
    if define_flags is not None:
        define_flags()
    if flags_module is not None:          # so --help lists them (help shows sys.argv[0]'s key flags)
        for flag in flags.FLAGS.get_key_flags_for_module(flags_module):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)

    def guarded(argv: list[str]):
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)
        try:
            return main(argv)
        except ProjectError as e:
            sys.exit(f"error: {e}")
        except Exception as e:            # a write that met a full or read-only disk
            problem = disk_problem(e)
            if problem is None:
                raise
            sys.exit(f"error: cannot write {disk_target(e)} ({problem}); free space on that disk "
                     f"(or choose a writable one), then rerun the same command")

    app.run(guarded)
