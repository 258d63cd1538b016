"""What a `serving.predict` run did, said in one line at its end: files, faces, the
files that failed by kind, and where the results are."""

from __future__ import annotations

import collections

NO_FACE = "no face found"    # how a photo without a face opens its error (after the file name)
TOO_SMALL = "too small"      # how an image under --min_face opens its error

# Error kinds, in the order the tally names them: (kind, words found in the error's
# first clause, after "<file>: ").  Anything else is "other".
ERROR_KINDS = (
    (NO_FACE, (NO_FACE,)),
    (TOO_SMALL, (TOO_SMALL,)),
    ("not an image", ("not a readable image", "empty file", "pixel limit")),
    ("missing", ("no such file",)),
    ("not a file", ("is a directory", "not a regular file", "cannot be read")),
    ("bad name", ("the file name is not UTF-8",)),
)
OTHER = "other"


def too_small(file: str, shape: tuple, min_face: int) -> str | None:
    """The error of an image (pixels of `shape`) with a side under --min_face, which
    holds no face that size; None when it is big enough."""
    if min(shape[:2]) >= min_face:
        return None
    return (f"{file}: {TOO_SMALL}: {shape[1]}x{shape[0]} px, under --min_face={min_face}; "
            f"pass a larger image, or lower --min_face")


def error_kind(file: str, error: str) -> str:
    """The kind of a result's error text (which begins with its file's name)."""
    reason = (error[len(file) + 2:] if error.startswith(f"{file}: ") else error).split(";")[0]
    for kind, words in ERROR_KINDS:
        if any(w in reason for w in words):
            return kind
    return OTHER


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


class Tally:
    def __init__(self, already: int = 0):
        self.already = already          # files an earlier run wrote to the predictions file
        self.files = self.faces = 0
        self.errors: collections.Counter = collections.Counter()
        self.pictures_refused = 0       # pictures not written: a file not ours in their place

    def add(self, result: dict) -> None:
        self.files += 1
        self.faces += len(result["faces"])
        if result["error"]:
            self.errors[error_kind(result["file"], result["error"])] += 1

    def line(self, jsonl: str | None = None, pictures_dir: str | None = None) -> str:
        """e.g. `done: 120 files, 131 faces; 3 files failed (2 no face found, 1 missing);
        predictions in preds.jsonl (500 files with 380 from earlier runs)`."""
        order = [kind for kind, _ in ERROR_KINDS] + [OTHER]
        failed = sum(self.errors.values())
        text = f"done: {plural(self.files, 'file')}, {plural(self.faces, 'face')}"
        if failed:
            kinds = ", ".join(f"{self.errors[k]} {k}" for k in order if self.errors[k])
            text += f"; {plural(failed, 'file')} failed ({kinds})"
        if jsonl:
            total = self.files + self.already
            earlier = f" with {self.already} from earlier runs" if self.already else ""
            text += f"; predictions in {jsonl} ({total} files{earlier}"
            text += ", each error on its file's line)" if failed else ")"
        if pictures_dir:
            text += f"; pictures in {pictures_dir}"
            if self.pictures_refused:
                text += (f" ({plural(self.pictures_refused, 'picture')} not written: a file not "
                         f"the project's in the way, named above)")
        return text
