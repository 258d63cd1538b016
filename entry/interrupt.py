"""Ctrl-C (SIGINT) in any command: one line on stderr and exit status 130.

The line says what stopped, what is kept and how to go on:
`interrupted: ingest stopped; the finished shards are kept in shards/.wiki.staging and
the same command resumes`. A command (or the library step that knows the place,
e.g. ingest's staging folder) sets that text with `note(...)` as soon as it knows it;
until then it is `<command> stopped before writing anything; rerun the same command`.
`entry.run` catches the KeyboardInterrupt once its `finally` blocks have run (locks
released, temporaries removed: every writer of the project leaves nothing
half-written that looks complete, even when killed), and `install()` does the same
for one that arrives outside it (while TensorFlow loads at a module's top). The
process then ends at once (`os._exit`): TensorFlow's and the pools' shutdown would
only add lines. Standard library only."""

from __future__ import annotations

import os
import signal
import sys
from typing import Callable

STATUS = 130          # 128 + SIGINT, what a shell reports for a command Ctrl-C stopped

_note: Callable[[], str] | str | None = None


def command() -> str:
    """The running command's module name (`ingest`, `trainer.evaluate`, ...)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = spec.name if spec is not None else os.path.basename(sys.argv[0] or "python")
    return name.removesuffix(".__main__")


def note(text: Callable[[], str] | str) -> None:
    """What the interrupted line says after `interrupted: ` (a callable is asked then)."""
    global _note
    _note = text


def message() -> str:
    try:
        text = _note() if callable(_note) else _note
    except Exception:   # the goodbye line must not fail
        text = None
    return f"interrupted: {text or f'{command()} stopped before writing anything; rerun the same command'}"


def stop() -> None:
    """Print the one line and end the process with status 130 (a second Ctrl-C is ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    try:
        os.write(2, (message() + "\n").encode("utf-8", "replace"))
    except OSError:
        pass
    os._exit(STATUS)


def install() -> None:
    """A KeyboardInterrupt no one caught (e.g. while a module's top imports TensorFlow)
    ends the process the same way instead of a traceback."""
    previous = sys.excepthook

    def hook(kind, value, traceback):
        if issubclass(kind, KeyboardInterrupt):
            stop()
        previous(kind, value, traceback)

    sys.excepthook = hook
