"""The run directory (`--model_dir`): what a training run leaves behind, by name.

    .dex-age         the marker (storage.outdir): written first, so even an interrupted
                     first run is recognisably a run; a directory with other contents and
                     no marker (even a run.json or checkpoints/ of its own) is refused,
                     never written into, and so is a link
    flags.txt        the resolved flags (re-usable: --flagfile=runs/X/flags.txt)
    run.json         shards dir and the sha256 of its shards per split, shard image size,
                     model input size, the framing of the training crops (detector,
                     aligned, margin: the manifest's; faces.framing), variant, task, cache_features, best_metric: what
                     evaluation/prediction/export need, and what a resumed run must not change
    checkpoints/     tf.train.CheckpointManager: model, optimizer, epoch, best metric (resume;
                     trainer.checkpoints finds them from the files)
    best.keras       the full age model with the best --best_metric so far
    best.json        which epoch best.keras is from and its --best_metric (written before it)
    history.csv      one row per completed epoch (the gender and ε-error columns when
                     the rows have them)
    tb/              TensorBoard summaries
    report.json, predictions.csv, learning_curves.png, mae_by_age.png   (trainer.evaluate: the
                     run's own records, test split; another data set or split writes
                     report-<data>-<split>.json, ...: evaluate.output_names)

Recognising a run needs no TensorFlow (`check_run`: the commands that read a run check
it before TensorFlow loads); `model.load.load_run_model` loads its Keras model.

One writer: the trainer (the chief, under multi_worker) holds `storage.lock.OutputLock`
on the directory (`parent/.NAME.lock`) for the whole run; a second trainer is refused
at once, naming the holder. Under that lock each start removes the partial files a
killed run left (`.NAME.tmp-<pid>` of the files above, `checkpoints/ckpt-N_temp/`).
"""

from __future__ import annotations

import contextlib
import csv
import fnmatch
import io
import json
import os
import shutil

from errors import ProjectError, disk_problem, disk_target
from errors.paths import missing
from faces import framing
from faces.facebox import DEFAULT_MARGIN, is_margin
from storage import outdir
from storage.atomic import atomic_write_bytes
from storage.bounded import read_bounded
from storage.json_file import load_json, read_json_object
from storage.lock import OutputLock

KIND = "run"                         # the marker's kind
# trainer.evaluate's report of the run's own records (test split) ...
OWN_REPORT = {"report": "report.json", "predictions": "predictions.csv",
              "learning_curves": "learning_curves.png", "mae_by_age": "mae_by_age.png",
              "report_html": "report.html"}
# Every top-level name the trainer and trainer.evaluate write into a run directory.
# history.csv holds a row per epoch: a larger file is not one (never read whole).
MAX_HISTORY_BYTES = 16 << 20
OWNED = (outdir.MARKER_NAME, "flags.txt", "run.json", "checkpoints", "best.keras", "best.json",
         "history.csv", "tb", *OWN_REPORT.values())
# ... and the names trainer.evaluate gives a report on another data set or split
# (* = <basename of the data set>-<split>).
OTHER_REPORT = {"report": "report-*.json", "predictions": "predictions-*.csv", "mae_by_age": "mae_by_age-*.png",
                "report_html": "report-*.html"}
OWNED_PATTERNS = tuple(OTHER_REPORT.values())


class RunDirError(ProjectError):
    """A run directory that cannot be used as asked; the message says why and what to do."""


def not_a_run(path: str) -> str:
    """What `path` is instead of a training run, and the command the user meant."""
    name = os.path.basename(os.path.normpath(path)) or "NAME"
    if not os.path.lexists(path):
        return missing(path, f"train a run there with `python -m trainer --model_dir {path} ...`")
    if not os.path.isdir(path):
        return f"{path} is a file, not a training run directory (the folder `python -m trainer --model_dir` writes)"
    if os.path.isfile(os.path.join(path, "manifest.json")):
        return (f"{path} is a data set (it holds manifest.json), not a training run: train one on it "
                f"with `python -m trainer --records {path} --model_dir runs/{name} ...`, or score a run "
                f"on it with `python -m trainer.evaluate --model_dir runs/RUN --records {path}`")
    kind = outdir.marker_kind(path)
    if kind not in (None, KIND):
        return (f"{path} is an output of this project of kind {kind!r}, not a training run; pass the "
                f"run's directory (the --model_dir it was trained with)")
    return (f"{path} is not a training run directory (train one with "
            f"`python -m trainer --model_dir {path} ...`)")


def check_run(path: str) -> None:
    """Refuse (RunDirError, one line) a `path` that is not a trained run: missing (named
    with the run one typo away, errors.paths), a file, a data set or another output, a
    folder without run.json, a run without best.keras yet. Standard library only: the
    commands that read a run call it before TensorFlow loads."""
    if not os.path.isfile(os.path.join(path, "run.json")):
        raise RunDirError(not_a_run(path))
    RunDir(path).require_best_model()


class RunDir:
    def __init__(self, path: str):
        self.path = path
        self.output = outdir.Output(path, kind=KIND, what="--model_dir")
        self._lock: OutputLock | None = None
        self.best_record_at_start: dict | None = None

    # -- ours, one writer --------------------------------------------------------
    def check(self) -> None:
        """Refuse, touching nothing, a --model_dir that is a file, holds what this project
        did not make (a run.json or checkpoints/ without the marker are the user's), is a
        link, or is another of its outputs (a data set, a feature cache)."""
        kind = outdir.marker_kind(self.path)
        if kind not in (None, KIND):
            raise RunDirError(f"--model_dir {self.path}: holds a {kind} output of this project, not a "
                              f"training run; nothing was touched: choose another --model_dir")
        self.output.check()

    def lock(self) -> None:
        """Become the directory's one writer (DataError at once, naming the holder, if taken)."""
        with self.writing():      # a lock file that cannot be created is a --model_dir problem
            self._lock = self.output.lock().acquire(disk_errors=False)

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @contextlib.contextmanager
    def writing(self, fix: str = "choose a --model_dir on a writable disk with free space"):
        """A read-only or full disk under the run directory (or a file there that cannot be
        written) costs one line, ending in `fix`; TensorFlow's checkpoint writes included."""
        try:
            yield
        except Exception as e:
            problem = disk_problem(e)
            if problem is None and not isinstance(e, OSError):
                raise
            where = disk_target(e) if problem else (e.filename or self.path)
            raise RunDirError(f"--model_dir {self.path}: cannot write {where} "
                              f"({problem or e.strerror or e}); {fix}") from e

    def make_ours(self) -> None:
        """The marker, first (creating the directory): even a run killed now is recognisable."""
        if not outdir.is_ours(self.path):
            outdir.drop_marker(self.path, KIND)

    def remove_partial(self) -> list[str]:
        """Delete the temporaries of the files above that a killed writer left
        (`.history.csv.tmp-<pid>`, `.best.keras.tmp-<pid>.keras`, ...); call under the lock."""
        removed = []
        for name in sorted(os.listdir(self.path)):
            written, tmp, _ = name[1:].partition(".tmp-")
            if name.startswith(".") and tmp and (written in OWNED or any(
                    fnmatch.fnmatchcase(written, pattern) for pattern in OWNED_PATTERNS)):
                full = self.file(name)
                shutil.rmtree(full) if os.path.isdir(full) else os.remove(full)
                removed.append(name)
        return removed

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    @property
    def checkpoints(self) -> str:
        return self.file("checkpoints")

    @property
    def best_model(self) -> str:
        return self.file("best.keras")

    @property
    def tensorboard(self) -> str:
        return self.file("tb")

    # -- flags.txt / run.json -------------------------------------------------
    def write_flags(self, lines: list[str]) -> None:
        atomic_write_bytes(self.file("flags.txt"), ("\n".join(lines) + "\n").encode())

    def write_info(self, info: dict) -> None:
        atomic_write_bytes(self.file("run.json"), (json.dumps(info, indent=2) + "\n").encode())

    def read_info(self, missing_ok: bool = False) -> dict:
        """run.json; with missing_ok, {} for a run that has not written one yet."""
        path = self.file("run.json")
        if not os.path.exists(path):
            if missing_ok:
                return {}
            raise RunDirError(f"{path}: not found; {not_a_run(self.path)}")
        return read_json_object(path, "a run description",
                                "restore it, or train into a new --model_dir", RunDirError)

    # -- best.json -------------------------------------------------------------
    def write_best_record(self, epoch: int, metric: str, value: float) -> None:
        atomic_write_bytes(self.file("best.json"),
                           (json.dumps({"epoch": epoch, "metric": metric, "value": value}) + "\n").encode())

    def read_best_record(self) -> dict | None:
        """{"epoch", "metric", "value"} of best.keras, or None (none written, or unreadable)."""
        try:
            record = load_json(self.file("best.json"))
            return record if isinstance(record, dict) and isinstance(record.get("epoch"), int) else None
        except (OSError, ValueError):
            return None

    def require_best_model(self) -> str:
        if not os.path.exists(self.best_model):
            raise RunDirError(f"{self.best_model}: not found; the run has not finished an epoch yet "
                              f"(train with `python -m trainer --model_dir {self.path}`)")
        return self.best_model

    # -- history.csv -----------------------------------------------------------
    def read_history(self) -> list[dict]:
        """history.csv's rows ({"epoch": int, metric: float}); a file that is not a
        regular file, over MAX_HISTORY_BYTES, or a row that is not an epoch's numbers is
        one RunDirError line naming the file and the line."""
        path = self.file("history.csv")
        if not os.path.exists(path):
            return []
        try:
            text = read_bounded(path, MAX_HISTORY_BYTES).decode()
        except (OSError, ValueError) as e:
            raise RunDirError(f"{path}: unreadable ({e}); restore it, or delete it (the run keeps "
                              f"training from its checkpoints)") from None
        rows = []
        for number, row in enumerate(csv.DictReader(io.StringIO(text, newline="")), 2):
            try:
                parsed = {k: (int(v) if k == "epoch" else float(v)) for k, v in row.items() if v != ""}
            except (TypeError, ValueError):
                parsed = {}
            if not isinstance(parsed.get("epoch"), int) or parsed["epoch"] < 1:
                raise RunDirError(f"{path}: line {number} is not an epoch number and its metrics "
                                  f"({','.join(str(v) for v in row.values())[:80]!r}); correct or delete "
                                  f"that line (the run keeps training from its checkpoints)")
            rows.append(parsed)
        return rows

    def write_history(self, rows: list[dict], fields: list[str]) -> None:
        """Rewrite the whole file atomically, columns `fields`: a kill never leaves half a row."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_bytes(self.file("history.csv"), buf.getvalue().encode())


def run_records(info: dict, where: str = "run.json") -> str:
    """The data set a run was trained on, from its run.json `info` (`where` names it in
    the error): a path, or one RunDirError line."""
    value = info.get("records")
    if not isinstance(value, str) or not value or "\0" in value:
        raise RunDirError(f"{where}: records {repr(value)[:80]} is not the path of the data set the run "
                          f"was trained on; restore run.json, or pass --records DIR")
    return value


def run_margin(info: dict, where: str = "run.json") -> float:
    """The face margin a run's model was trained on, from its run.json `info` (`where`
    names it in the error: a margin that is not a number >= 0 is refused); a run.json
    that does not record it is from IMDB-WIKI-margin data."""
    margin = info.get("margin", DEFAULT_MARGIN)
    if not is_margin(margin):
        raise RunDirError(f"{where}: margin {margin!r} is not a number >= 0 (a fraction of the "
                          f"face box added on every side); correct it to the margin of the data set "
                          f"the run was trained on (`python -m records inspect DIR` shows it)")
    return margin


def run_framing(info: dict, where: str = "run.json") -> framing.Framing:
    """How the faces a run was trained on were framed (faces.framing), its margin
    checked by run_margin."""
    return framing.of({**info, "margin": run_margin(info, where)})
