"""Ordered, bounded fan-out of image chunks to decode worker processes.

- Bounded memory: at most `inflight` chunks are queued or finished-but-unread
  (multiprocessing.Pool.imap would read the whole task list ahead).
- No hangs: the workers run in a concurrent.futures.ProcessPoolExecutor, which
  notices a worker that dies (kill -9, the OOM killer) and fails every pending
  task; `map` turns that into one DataError line.  (multiprocessing.Pool
  silently replaces the dead worker and waits forever for its lost task.)
- Small workers: all workers are forked when the pool is created, which
  ingest does before it loads the metadata table and before it takes the
  output lock, so no worker holds a copy of the table or the lock.  Ingest
  never imports TensorFlow, so the forked workers are small PIL-only processes.
  Their private memory (USS) stays flat over a long run: every PIL plugin is
  loaded before the fork (PIL imports them all, lazily, at the first file its
  common formats do not identify, which would put a private copy in each
  worker), and each worker returns freed heap to the system after every chunk
  (glibc's malloc_trim; without it the heap creeps up by a few MB over 100k images).
- No orphans: each worker asks the kernel for SIGKILL when its parent dies.
workers=1 decodes inline (the benchmark's single-process baseline).
"""

from __future__ import annotations

import collections
import concurrent.futures
import ctypes
import multiprocessing
import os
import signal
from concurrent.futures.process import BrokenProcessPool

from PIL import Image

from errors import DataError
from ingest import images

_PR_SET_PDEATHSIG = 1


def _init_worker(settings: images.ImageSettings, parent: int) -> None:
    # Ctrl-C reaches the whole process group: the parent stops the pool and says the
    # one line (entry.interrupt); a worker that raised too would print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):      # not Linux: workers may outlive a killed parent
        pass
    if os.getppid() != parent:             # the parent died before prctl took effect
        os._exit(1)
    images.init_worker(settings, threads=1)   # one detector thread per worker (--reframe mtcnn, blazeface)


def _ready() -> int:
    return os.getpid()


try:
    _malloc_trim = ctypes.CDLL(None).malloc_trim      # glibc
except (OSError, AttributeError):                     # another libc: nothing to trim
    _malloc_trim = None


def _decode(chunk):
    """A worker's task: one chunk, then the freed heap back to the system."""
    out = images.process_chunk(chunk)
    if _malloc_trim is not None:
        _malloc_trim(0)
    return out


class DecodePool:
    def __init__(self, settings: images.ImageSettings, workers: int, inflight_per_worker: int = 4):
        self.settings, self.workers = settings, workers
        self.inflight = max(2, workers * inflight_per_worker)
        self._pool = None
        if workers > 1:
            Image.init()                                    # every plugin, shared with the workers
            self._pool = concurrent.futures.ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("fork"),
                initializer=_init_worker, initargs=(settings, os.getpid()))
            # With "fork" the executor starts every worker at the first submit:
            # do it now, while this process is still small.
            ready = self._pool.submit(_ready)
            self._processes = dict(self._pool._processes)   # pid -> Process, kept for the error
            try:
                ready.result()
            except BrokenProcessPool:                       # a worker died while starting
                raise DataError(self._death_message()) from None
        else:
            images.init_worker(settings)

    def map(self, chunks):
        """Yield (index, encoded or None, skip reason or None) in chunk order."""
        if self._pool is None:
            for chunk in chunks:
                yield from images.process_chunk(chunk)
            return
        pending = collections.deque()
        try:
            for chunk in chunks:
                pending.append(self._pool.submit(_decode, chunk))
                if len(pending) >= self.inflight:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()
        except BrokenProcessPool:
            raise DataError(self._death_message()) from None

    def _death_message(self) -> str:
        # The executor fails the pending futures before it terminates (SIGTERM)
        # and reaps the other workers: wait for that, so every exit code is known.
        self._pool.shutdown(wait=True, cancel_futures=True)
        codes = {pid: process.exitcode for pid, process in self._processes.items()}
        dead = {pid: code for pid, code in codes.items() if code not in (None, 0, -signal.SIGTERM)}
        dead = dead or {pid: code for pid, code in codes.items() if code not in (None, 0)}
        what = ", ".join(f"pid {pid} " + (f"killed by signal {-code}" if code < 0 else f"exit code {code}")
                         for pid, code in sorted(dead.items())) or "a worker"
        return (f"a decode worker died ({what}; signal 9 is what the out-of-memory killer sends); "
                f"lower --workers or free memory, then rerun the same command: it keeps the "
                f"completed shards")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def kill(self) -> None:
        """Kill the workers without touching the executor: after a Ctrl-C that landed
        inside its submit() its lock may still be held, and shutdown() would wait forever."""
        if self._pool is not None:
            for process in self._processes.values():
                if process.is_alive():
                    process.kill()

    def terminate(self) -> None:
        if self._pool is not None:
            self.kill()
            self._pool.shutdown(wait=True, cancel_futures=True)
