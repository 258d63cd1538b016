"""Where serving.predict writes: the predictions file (--jsonl): JSON lines, one per
photo, marked as the project's (`.NAME.dex-age` beside it), locked for one writer, and
continued after a kill from the last complete line; and the pictures (--pictures_dir),
one name per photo, each marked inside (a PNG text chunk), written only where no file
of the user's is."""

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
# one inside without changing what its readers see): `.NAME.dex-age` next to NAME, the
# marker content of storage.outdir (kind "predictions").
MARK_KIND = "predictions"
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


def is_marked(path: str) -> bool:
    """True when the predictions file `path` has the project's mark beside it."""
    return outdir.read_mark(mark_path(path)) == MARK_KIND


def resume_output(out, path: str) -> set[str]:
    """The files an earlier run already wrote to the --jsonl file `path`, read through
    its open, locked handle `out` (binary, append mode).  Every complete line must be a
    result line (a JSON object with the keys file, faces and error): a file of those
    lines only is recognisably a predictions file and is continued.  A last line
    without its newline (torn by a kill) is cut off only in a file the project started
    (its mark beside it); anything else is refused untouched."""
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
        if not is_marked(path):
            raise PredictError(f"{path}: does not end with a newline and is not a predictions "
                               f"file (no {outdir.MARKER_NAME} mark beside it); {refuse}")
        out.truncate(end)
    return done


# How much of an existing --jsonl check_destinations reads: its first line (a result line is
# a few hundred bytes, a few KB with age_probs).
_FIRST_LINE_BYTES = 1 << 20


def check_destinations(jsonl: str | None, pictures_dir: str | None) -> None:
    """Refuse, before any work, a --jsonl that is a folder and a --pictures_dir that
    looks like a predictions file (each is the other flag's shape), and a --jsonl whose
    first line is not a prediction line (some other file: resume_output would refuse it
    too, after the lock)."""
    if jsonl and os.path.isdir(jsonl):
        raise PredictError(f"--jsonl {jsonl}: is a folder; --jsonl names the predictions file (e.g. "
                           f"{os.path.join(jsonl, 'predictions.jsonl')}), --pictures_dir a folder for pictures")
    if pictures_dir and pictures_dir.lower().endswith((".jsonl", ".json")):
        raise PredictError(f"--pictures_dir {pictures_dir}: names a JSON file, and --pictures_dir is a folder "
                           f"for annotated pictures; for the predictions file pass --jsonl {pictures_dir}")
    if pictures_dir and os.path.exists(pictures_dir) and not os.path.isdir(pictures_dir):
        raise PredictError(f"--pictures_dir {pictures_dir}: is a file, and --pictures_dir is a folder for "
                           f"annotated pictures; pass a folder name")
    if jsonl and os.path.isfile(jsonl) and not os.path.islink(jsonl):
        try:
            with open(jsonl, "rb") as f:
                first = f.readline(_FIRST_LINE_BYTES)
        except OSError:
            return                      # open_output names what is wrong with it
        if first.endswith(b"\n") and not _is_result_line(first):
            raise PredictError(f"{jsonl}: line 1 is not a prediction line; --jsonl only continues a predictions "
                               f"file it wrote, and nothing was changed: pass a new file name")


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
        if not is_marked(path):
            if os.path.lexists(mark_path(path)):
                raise PredictError(f"{mark_path(path)}: is in the way of the mark of the predictions file "
                                   f"{path} and is not one; nothing was changed: move it away or pass "
                                   f"another --jsonl")
            outdir.write_mark(mark_path(path), MARK_KIND)
        return out, done
    except BaseException:
        out.close()
        raise


PICTURE_SUFFIX = "_annotated.png"       # the photo with its boxes and ages
DISTRIBUTION_SUFFIX = "_face{}_ages.png"    # face N's age distribution


def picture_root(photos: list[str]) -> str:
    """The deepest folder holding every photo of a run: picture names keep each photo's
    path below it."""
    folders = [os.path.dirname(os.path.abspath(p)) for p in photos]
    return os.path.commonpath(folders) if folders else os.getcwd()


def picture_stem(photo: str, root: str) -> str:
    """Where the pictures of `photo` go under --pictures_dir, without suffix: its path
    below `root` (picture_root) without extension: photos `a/me.jpg` and `b/me.jpg` get
    `a/me` and `b/me`, photos of one folder their own names."""
    return os.path.splitext(os.path.relpath(os.path.abspath(photo), root))[0]


def is_our_picture(path: str) -> bool:
    """A regular file (never read through a link) that is a PNG carrying the mark of
    the pictures serving.predict draws (reports.prediction_plots.PICTURE_MARK)."""
    from PIL import Image

    from reports.prediction_plots import PICTURE_MARK
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return False
    with os.fdopen(fd, "rb") as f:
        try:
            with Image.open(f, formats=["PNG"]) as image:
                return all(image.info.get(k) == v for k, v in PICTURE_MARK.items())
        except Exception:      # not a PNG, damaged: not ours
            return False


class PictureRefused(Exception):
    """A picture not written because something not ours is in its place (a counted skip,
    said on stderr; the photo's prediction stands)."""


class Pictures:
    """The --pictures_dir of one run: which picture path a photo gets, and whether it may
    be written there.  A picture replaces only a picture of ours (is_our_picture), never
    a user's file, link or folder of that name, never one this run already wrote for
    another photo, and is never written through a linked folder inside --pictures_dir."""

    FIX = "free space on that disk or pass --pictures_dir on another one, then rerun the same command"

    def __init__(self, folder: str, photos: list[str]):
        self.folder = folder
        self.root = picture_root(photos)
        self.written: set[str] = set()
        self.refused: list[str] = []      # why pictures were not written, for the caller to say

    def draw(self, stem: str, suffix: str, what: str, plot) -> str | None:
        """`plot(path)` for the picture `stem + suffix`; None, its reason added to
        `refused`, when something not ours is in its place.  A full disk (no photo's
        fault) is a PredictError naming the picture."""
        try:
            with writing(self.folder, "the pictures folder", self.FIX):
                os.makedirs(self.folder, exist_ok=True)
                path = self.place(stem, suffix)
        except PictureRefused as e:
            self.refused.append(str(e))
            return None
        with writing(path, what, self.FIX):
            return plot(path)

    def stem(self, photo: str) -> str:
        return picture_stem(photo, self.root)

    def place(self, stem: str, suffix: str) -> str:
        """The path of the picture `stem + suffix`, its folders made; PictureRefused when
        something not ours is in the way (nothing touched)."""
        path = os.path.join(self.folder, stem + suffix)
        sub = self.folder
        for part in os.path.dirname(stem).split(os.sep) if os.path.dirname(stem) else []:
            sub = os.path.join(sub, part)
            if os.path.islink(sub) or (os.path.lexists(sub) and not os.path.isdir(sub)):
                raise PictureRefused(f"{path}: {sub} is a link or a file, not a folder of "
                                     f"--pictures_dir; picture not written: move it away")
            if not os.path.lexists(sub):
                os.mkdir(sub)
        if path in self.written:
            raise PictureRefused(f"{path}: another photo of this run has a picture of that name (same "
                                 f"path but the extension); picture not written: rename one photo")
        if os.path.lexists(path) and not is_our_picture(path):
            raise PictureRefused(f"{path}: a file this project did not write is in the way; picture not "
                                 f"written: move it away or pass another --pictures_dir")
        self.written.add(path)
        return path


def print_text(result: dict, note) -> None:
    """A result as text on stdout; its error through `note` (a line on stderr)."""
    if result["error"]:
        note(f"error: {result['error']}")
        return
    for i, face in enumerate(result["faces"], 1):
        extra = f", {face['gender']}" if "gender" in face else ""
        print(f"{result['file']}: face {i} at {tuple(face['box'])}: apparent age "
              f"{face['apparent_age']:.1f} ± {face['age_sd']:.1f}, 90% in {face['age_low']}-{face['age_high']} "
              f"(most likely {face['most_likely_age']}{extra})")
    for path in [result.get("annotated")] + result.get("distributions", []):
        if path:
            print(f"  wrote {path}")
