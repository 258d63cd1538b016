"""The predictions file serving.predict writes (--jsonl): JSON lines, one per photo,
marked as the project's (`.NAME.dex-age` beside it), locked for one writer, and
continued after a kill from the last complete line."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat

from errors import ProjectError, disk_problem
from storage import outdir


class PredictError(ProjectError):
    """Bad arguments or output file; the message names the thing and the fix."""


@contextlib.contextmanager
def writing(path: str, what: str, fix: str):
    """A full or read-only disk met in the block (a failed write names no file) is one
    PredictError naming `path`, what was being written and the `fix`; any other failure
    passes through."""
    try:
        yield
    except Exception as e:
        problem = disk_problem(e)
        if problem is None:
            raise
        raise PredictError(f"{path}: cannot write {what} ({problem}); {fix}") from e


# A predictions file carries the project's mark beside it (a JSONL file has no room for
# one inside without changing what its readers see): `.NAME.dex-age` next to NAME.
_LINE_START = b'{"file": '      # how every line of ours begins (json.dumps of a result)
# The longest line of ours (a photo's faces with their probabilities are a few KB); a
# longer one is not a prediction line, and is refused having read only this much.
MAX_LINE_BYTES = 1 << 24


def mark_path(path: str) -> str:
    """The marker file beside the predictions file `path`."""
    head, name = os.path.split(os.path.abspath(path))
    return os.path.join(head, f".{name}{outdir.MARKER_NAME}")


def _is_result_line(line: bytes) -> bool:
    """A line as serving.predict writes it: a JSON object with file, faces and error."""
    try:
        value = json.loads(line)
    except ValueError:
        return False
    return (isinstance(value, dict) and isinstance(value.get("file"), str)
            and isinstance(value.get("faces"), list) and "error" in value)


def resume_output(out, path: str) -> set[str]:
    """The files an earlier run already wrote to the --jsonl file `path`, read through
    its open, locked handle `out` (binary, append mode).  Every complete line must be a
    result line; a last line torn by a kill is cut off first, only in a file of ours
    (its mark beside it, or, for a file written before marks, a tail that begins like
    a result line).  Anything else is refused untouched."""
    out.seek(0)
    done, end, number, tail = set(), 0, 0, b""
    refuse = ("--jsonl only continues a predictions file it wrote, and nothing was changed: "
              "pass a new file name")
    while line := out.readline(MAX_LINE_BYTES + 1):    # a line at a time: a foreign file is
        number += 1                                   # refused at its first line, unread beyond
        if not line.endswith(b"\n") and len(line) <= MAX_LINE_BYTES:
            tail = line                                # the last line, torn by a kill
            break
        if len(line) > MAX_LINE_BYTES or not _is_result_line(line):
            raise PredictError(f"{path}: line {number} is not a prediction line; {refuse}")
        done.add(json.loads(line)["file"])
        end += len(line)
    if tail:
        if not (os.path.isfile(mark_path(path)) or tail.startswith(_LINE_START)):
            raise PredictError(f"{path}: does not end with a newline and is not a predictions "
                               f"file (no {outdir.MARKER_NAME} mark beside it); {refuse}")
        out.truncate(end)
    return done


def check_destinations(jsonl: str | None, pictures_dir: str | None) -> None:
    """Refuse, before any work, a --jsonl that is a folder and a --pictures_dir that
    looks like a predictions file: each is the other flag's shape."""
    if jsonl and os.path.isdir(jsonl):
        raise PredictError(f"--jsonl {jsonl}: is a folder; --jsonl names the predictions file (e.g. "
                           f"{os.path.join(jsonl, 'predictions.jsonl')}), --pictures_dir a folder for pictures")
    if pictures_dir and pictures_dir.lower().endswith((".jsonl", ".json")):
        raise PredictError(f"--pictures_dir {pictures_dir}: names a JSON file, and --pictures_dir is a folder "
                           f"for annotated pictures; for the predictions file pass --jsonl {pictures_dir}")
    if pictures_dir and os.path.exists(pictures_dir) and not os.path.isdir(pictures_dir):
        raise PredictError(f"--pictures_dir {pictures_dir}: is a file, and --pictures_dir is a folder for "
                           f"annotated pictures; pass a folder name")


def open_output(path: str):
    """The --jsonl file open for appending (binary) and locked for this process (one
    writer), and the files already in it (resume_output).  Only a regular file is
    used (never through a link; a FIFO, device or directory is refused before a byte
    is read), and the lock comes first: a file another serving.predict is writing is
    refused before a byte of it is read or cut.  A new file gets its mark."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                     | os.O_CLOEXEC, 0o666)
    except OSError as e:
        what = "a symbolic link" if e.errno == errno.ELOOP else e.strerror
        raise PredictError(f"{path}: cannot be the --jsonl ({what}); pass a new file name "
                           f"(a predictions file is a regular file)") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise PredictError(f"{path}: not a regular file (a FIFO, device or directory); pass a "
                           f"new file name for --jsonl")
    out = os.fdopen(fd, "a+b")
    try:
        fcntl.flock(out, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        out.close()
        raise PredictError(f"{path}: another serving.predict is writing it; wait for it or pass "
                           f"another --jsonl") from None
    try:
        done = resume_output(out, path)
        if not os.path.isfile(mark_path(path)):
            outdir.write_mark(mark_path(path), "predictions")
        return out, done
    except BaseException:
        out.close()
        raise
