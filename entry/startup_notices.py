"""Hide TensorFlow's C++ start-up notices while it loads and lists its devices.

Importing TensorFlow 2.21 on a CPU machine writes 6-9 lines to file descriptor 2
before absl's C++ logging starts (so TF_CPP_MIN_LOG_LEVEL cannot hide them), and
listing its devices adds an `E0000 ... failed call to cuInit` line a new user
reads as a failure. `install()` (called by `entry` on import, before any module
imports TensorFlow) puts a finder on `sys.meta_path` that, around the import of
the `tensorflow` package and the first device listing, points fd 2 at a pipe. A
small child process (this file run by `python -I -S`, standard library only)
reads it line by line, drops the lines matching `NOTICES` and writes every other
line to the real stderr at once, so a real error still arrives; being a process of
its own, it forwards even the last line of a TensorFlow that aborts while loading
(an unsupported CPU, a failed CHECK). After the listing fd 2 is the real stderr
again: the filter covers only those seconds, wherever TensorFlow is first imported
(a command's top, or inside its main). `DEX_TF_STARTUP_LOGS=1` shows the notices.

No TensorFlow import here.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import signal
import subprocess
import sys

SHOW_ENV = "DEX_TF_STARTUP_LOGS"   # "1": do not filter

# absl's C++ line: severity + MMDD, time, thread id, file:line] text.
_CPP = r"[IWE]\d{4} [\d:.]+\s+\d+ "
# The known notices, one regex each; any other line passes.
NOTICES = tuple(re.compile(p) for p in (
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$",
    _CPP + r"port\.cc:\d+\] oneDNN custom operations are on\.",
    _CPP + r"cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine, GPU will not be used\.$",
    _CPP + r"cuda_(platform|executor|diagnostics)\.cc:\d+\] (failed call to cuInit|retrieving CUDA diagnostic"
           r"|hostname: |kernel driver does not appear|could not open file to read NVIDIA)",
    _CPP + r"cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized to use available CPU",
    r"To enable the following instructions: .*, in other operations, rebuild TensorFlow with the "
    r"appropriate compiler flags\.$",
    _CPP + r"\w+\.cc:\d+\] Unable to register cu(DNN|FFT|BLAS) factory",
    r"computation placer already registered\.",
))
_JOIN_S = 5.0     # at most this long for the forwarder to pass on the last lines


def is_notice(line: str) -> bool:
    return any(p.search(line) for p in NOTICES)


def _forward(read_fd: int, real_fd: int) -> None:
    """Copy lines from `read_fd` to `real_fd` until end of file, dropping notices."""
    pending = b""
    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        out = b"".join(line + b"\n" for line in lines
                       if not is_notice(line.decode("utf-8", "replace")))
        _write(real_fd, out)
    if pending and not is_notice(pending.decode("utf-8", "replace")):
        _write(real_fd, pending)
    os.close(read_fd)


def _write(fd: int, data: bytes) -> None:
    while data:
        try:
            data = data[os.write(fd, data):]
        except OSError:
            return          # stderr is gone: nothing to tell anyone


@contextlib.contextmanager
def filtered():
    """fd 2 goes through the notice filter inside the block; restored on the way
    out (exception or not), after the forwarder passed on what was written."""
    try:
        real = os.dup(2)
        read_fd, write_fd = os.pipe()
    except OSError:           # no fd 2 at all (or no fds left): nothing to filter
        yield
        return
    try:
        forwarder = subprocess.Popen([sys.executable, "-I", "-S", os.path.abspath(__file__)],
                                     stdin=read_fd, stdout=real, stderr=real)
    except OSError:
        forwarder = None
    os.close(read_fd)
    if forwarder is None:     # cannot start it: show everything rather than risk a line
        os.close(write_fd)
        os.close(real)
        yield
        return
    _flush()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        yield
    finally:
        _flush()
        os.dup2(real, 2)          # closes the pipe's last write end here: the forwarder ends
        os.close(real)
        with contextlib.suppress(subprocess.TimeoutExpired):
            forwarder.wait(_JOIN_S)   # a child that inherited fd 2 keeps the pipe open: not waited for


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


class _Loader(importlib.abc.Loader):
    """Runs TensorFlow's own loader, then lists its devices, inside `filtered()`."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = module.__spec__.loader = self.loader    # TensorFlow's own, as usual
        with filtered():
            self.loader.exec_module(module)
            tf = sys.modules.get(module.__name__, module)
            with contextlib.suppress(Exception):   # a real failure recurs, unfiltered, where used
                tf.config.list_physical_devices()


class _Finder(importlib.abc.MetaPathFinder):
    """Wraps the loader of the `tensorflow` package (once; then leaves sys.meta_path)."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


def _forward_stdin() -> None:
    """The forwarder process: stdin (the pipe) to stdout (the real stderr), filtered.
    Ctrl-C goes to the whole process group; the forwarder ignores it and ends when
    the pipe does, so no line is lost on the way out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _forward(0, 1)


def install() -> None:
    """Filter TensorFlow's start-up notices when it is imported, unless already
    imported, already installed, or DEX_TF_STARTUP_LOGS=1."""
    if os.environ.get(SHOW_ENV) == "1" or "tensorflow" in sys.modules:
        return
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


if __name__ == "__main__":
    _forward_stdin()
