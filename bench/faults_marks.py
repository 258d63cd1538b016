"""The rule-2 cases of `python -m bench.faults --only rules` on marks and looks: the
project takes for its own only what carries its exact mark, and writes no file without
looking at what is there. Each case builds what a user could have on disk (a link or a
note named like the project's lock, a folder looking like a run, a SavedModel of their
own, a one-line JSON file, their own picture, a folder of experiments inside a data
set, notes in a folder named like staging, a link given as --out), runs the real
command, and compares the bystander byte for byte; the kill cases build the state a
kill -9 leaves and check that the next run repairs it. See WORKSPACE.md, "Guarantees".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

from bench.faults import INGEST, REPO, Case, env, last_line, shard_digests, trainer_args
from bench.faults_rules import BYSTANDER, digest, observed, one_line, timed


def tree(path: str) -> dict:
    """{relative path: sha256 or 'dir' or 'link->target'} of everything under `path`."""
    out = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(root, name)
            rel = os.path.relpath(full, path)
            out[rel] = (f"link->{os.readlink(full)}" if os.path.islink(full)
                        else "dir" if os.path.isdir(full) else digest(full))
    return out


def write(path: str, data: bytes = BYSTANDER) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def ingest(w: str, out: str, *extra: str):
    return timed("ingest", "--src", os.path.join(w, "src"), "--out", out, *INGEST, *extra)


def lock_link_beside_ingest(w: str) -> Case:
    case = Case("rule 2: `.NAME.lock` beside ingest --out is a link to a user's file",
                "one line; the file the link points to untouched, nothing made")
    victim = write(os.path.join(w, "marks", "victim.txt"))
    os.symlink(victim, os.path.join(w, "marks", ".faces.lock"))
    out = os.path.join(w, "marks", "faces")
    result, seconds = ingest(w, out)
    kept = digest(victim) == digest_of(BYSTANDER) and not os.path.exists(out)
    case.observed = observed(result, seconds, f"victim {'untouched' if kept else 'CHANGED'}", w)
    case.ok = one_line(result, "is a symbolic link where this project keeps its lock file") and kept
    return case


def users_lock_file_beside_a_run(w: str, good: str) -> Case:
    case = Case("rule 2: a user's own file `runs/.NAME.lock` beside trainer --model_dir",
                "one line; the user's file untouched, no run made")
    mine = write(os.path.join(w, "runs", ".mylock.lock"))
    run_dir = os.path.join(w, "runs", "mylock")
    result, seconds = timed(*trainer_args(good, run_dir, "--epochs=1"))
    kept = digest(mine) == digest_of(BYSTANDER) and not os.path.exists(run_dir)
    case.observed = observed(result, seconds, f"file {'untouched' if kept else 'CHANGED'}", w)
    case.ok = one_line(result, "is in the way of this project's lock file") and kept
    return case


def run_lookalike(w: str, good: str) -> Case:
    case = Case("rule 2: trainer --model_dir a user's folder holding run.json, history.csv, checkpoints/checkpoint",
                "one line; the folder untouched")
    folder = os.path.join(w, "marks", "my-run")
    for name in ("run.json", "history.csv", "checkpoints/checkpoint"):
        write(os.path.join(folder, name))
    before = tree(folder)
    result, seconds = timed(*trainer_args(good, folder, "--epochs=1"))
    kept = tree(folder) == before
    case.observed = observed(result, seconds, f"folder {'untouched' if kept else 'CHANGED'}", w)
    case.ok = one_line(result, "not empty and not written by this project") and kept
    return case


def predictions_meta_file(w: str) -> Case:
    case = Case("rule 2: predict --jsonl a one-line JSON file `{\"file\": ...}` without a final newline",
                "one line; the file untouched, no mark beside it")
    folder = os.path.join(w, "marks", "meta")
    path = write(os.path.join(folder, "meta.json"), b'{"file": "thesis.pdf", "n": 1}')
    code = ("import sys\nfrom serving.output import PredictError, open_output\n"
            "try:\n    open_output(sys.argv[1])[0].close()\nexcept PredictError as e:\n"
            "    print('error: ' + str(e), file=sys.stderr); sys.exit(1)")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code, path], cwd=REPO, env=env(), capture_output=True,
                            text=True, timeout=60)
    kept = open(path, "rb").read() == b'{"file": "thesis.pdf", "n": 1}' and os.listdir(folder) == ["meta.json"]
    case.observed = observed(result, time.monotonic() - started, f"file {'untouched' if kept else 'CHANGED'}", w)
    case.ok = one_line(result, "does not end with a newline and is not a predictions file") and kept
    return case


def pictures_over_users_file(w: str, run_dir: str) -> Case:
    case = Case("rule 2: predict --pictures_dir album holding the user's me_annotated.png; photos me.jpg, a/me.jpg, b/me.jpg",
                "exit 0; the user's picture untouched and counted as not written; a/ and b/ get a picture each")
    photos = os.path.join(w, "marks", "photos")
    from PIL import Image
    names = ["me.jpg", "a/me.jpg", "b/me.jpg"]
    for i, name in enumerate(names):
        os.makedirs(os.path.dirname(os.path.join(photos, name)), exist_ok=True)
        Image.new("RGB", (40, 40), (40 + 80 * i, 90, 90)).save(os.path.join(photos, name))
    album = os.path.join(w, "marks", "album")
    mine = write(os.path.join(album, "me_annotated.png"))
    result, seconds = timed("serving.predict", f"--model_dir={run_dir}", "--no_detect", "--pictures_dir", album,
                            *[os.path.join(photos, n) for n in names])
    pictures = [p for p in ("a/me_annotated.png", "b/me_annotated.png") if os.path.isfile(os.path.join(album, p))]
    distinct = len(pictures) == 2 and digest(os.path.join(album, pictures[0])) != digest(os.path.join(album, pictures[1]))
    kept = digest(mine) == digest_of(BYSTANDER)
    line = last_line(result.stderr).replace(w + "/", "")
    case.observed = (f"exit {result.returncode} in {seconds:.1f} s: {len(pictures)} pictures "
                     f"{'(distinct)' if distinct else ''}; user's picture {'untouched' if kept else 'CHANGED'}; "
                     f"{line[line.find('pictures in'):][:110]}")
    case.ok = result.returncode == 0 and distinct and kept and "1 picture not written" in line
    return case


def experiments_in_a_data_set(w: str, good: str) -> Case:
    case = Case("rule 2: a user's folder experiments/ (a copy of a run, results.md) inside a data set, then a re-ingest with other flags",
                "exit 0; experiments/ carried over whole, byte for byte")
    out = os.path.join(w, "marks", "with-experiments")
    shutil.copytree(good, out, ignore=shutil.ignore_patterns("features"))
    experiments = os.path.join(out, "experiments")
    write(os.path.join(experiments, "results.md"))
    write(os.path.join(experiments, "run-copy", "run.json"))
    write(os.path.join(experiments, "run-copy", ".dex-age"),
          json.dumps({"kind": "run", "created": "2026-01-01T00:00:00+00:00"}).encode() + b"\n")
    before = tree(experiments)
    result, seconds = ingest(w, out, "--jpeg_quality", "60")
    kept = os.path.isdir(experiments) and tree(experiments) == before
    case.observed = observed(result, seconds, f"experiments/ {'kept whole' if kept else 'CHANGED OR REMOVED'}", w)
    case.ok = result.returncode == 0 and kept
    return case


def notes_in_staging(w: str) -> Case:
    case = Case("rule 2: a user's `.NAME.staging/` holding only `.dex-age-notes.txt`",
                "one line; the folder untouched")
    folder = os.path.join(w, "marks", ".notes-out.staging")
    write(os.path.join(folder, ".dex-age-notes.txt"))
    result, seconds = ingest(w, os.path.join(w, "marks", "notes-out"))
    kept = tree(folder) == {".dex-age-notes.txt": digest_of(BYSTANDER)}
    case.observed = observed(result, seconds, f"folder {'untouched' if kept else 'CHANGED'}", w)
    case.ok = one_line(result, "is in the way of the staging directory") and kept
    return case


def killed_at_the_marker(w: str) -> Case:
    case = Case("rule 2: --out left by a kill -9 inside the marker write (only `..dex-age.tmp-PID`)",
                "the rerun exits 0; the temporary gone, the data set marked")
    out = os.path.join(w, "marks", "unborn")
    write(os.path.join(out, "..dex-age.tmp-4242"), b'{"kind": "ima')
    result, seconds = ingest(w, out)
    left = [n for n in os.listdir(out) if ".tmp-" in n]
    case.observed = observed(result, seconds, f"temporaries left: {left or 'none'}", w)
    case.ok = result.returncode == 0 and not left and shard_digests(out) is not None
    return case


def out_is_a_link(w: str, good: str) -> Case:
    case = Case("rule 2: ingest --out a link to a data set elsewhere",
                "one line; the link and the data set it points to untouched")
    elsewhere = os.path.join(w, "marks", "other-disk", "faces")
    shutil.copytree(good, elsewhere, ignore=shutil.ignore_patterns("features"))
    link = os.path.join(w, "marks", "faces-link")
    os.symlink(elsewhere, link)
    before = tree(elsewhere)
    result, seconds = ingest(w, link, "--jpeg_quality", "60")
    kept = os.path.islink(link) and tree(elsewhere) == before
    case.observed = observed(result, seconds, f"link and data set {'untouched' if kept else 'CHANGED'}", w)
    case.ok = one_line(result, "is a symbolic link") and kept
    return case


def export_killed_between_renames(w: str, run_dir: str, export_dir: str) -> Case:
    case = Case("rule 2: serving.export after a kill -9 between its renames (old export aside, new one staged)",
                "exit 0; one complete export, no leftovers beside it")
    parent = os.path.join(w, "marks", "exports")
    out = os.path.join(parent, "e")
    shutil.copytree(export_dir, os.path.join(parent, ".e.old"))       # the first rename done
    shutil.copytree(export_dir, os.path.join(parent, ".e.staging"))   # the second not yet
    result, seconds = timed("serving.export", f"--model_dir={run_dir}", f"--out={out}")
    beside = sorted(os.listdir(parent))
    complete = os.path.isfile(os.path.join(out, "export.json")) and os.path.isfile(os.path.join(out, "saved_model.pb"))
    case.observed = observed(result, seconds, f"beside: {beside}; export {'complete' if complete else 'MISSING'}", w)
    case.ok = result.returncode == 0 and complete and beside == [".e.lock", "e"]
    return case


def two_exports_at_once(w: str, run_dir: str) -> Case:
    case = Case("rule 2: two serving.export at once into one --out",
                "one finishes, the other is refused naming the holder")
    out = os.path.join(w, "marks", "exports-two", "e")
    args = [sys.executable, "-m", "serving.export", f"--model_dir={run_dir}", f"--out={out}"]
    procs = [subprocess.Popen(args, cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    codes = sorted(p.returncode for p in procs)
    refused = [last_line(err) for (_, err), p in zip(outs, procs) if p.returncode]
    case.observed = f"exit codes {codes}; " + (refused[0].replace(w + "/", "")[:110] if refused else "none refused")
    case.ok = codes == [0, 1] and "already being written by pid" in refused[0] \
        and os.path.isfile(os.path.join(out, "export.json"))
    return case


def digest_of(data: bytes) -> str:
    import hashlib
    return hashlib.sha256(data).hexdigest()


def mark_cases(w: str, good: str) -> list[Case]:
    """The ingest and trainer cases (no run needed)."""
    os.makedirs(os.path.join(w, "marks"), exist_ok=True)
    return [lock_link_beside_ingest(w), users_lock_file_beside_a_run(w, good), run_lookalike(w, good),
            predictions_meta_file(w), experiments_in_a_data_set(w, good), notes_in_staging(w),
            killed_at_the_marker(w), out_is_a_link(w, good)]


def serving_mark_cases(w: str, run_dir: str, export_dir: str) -> list[Case]:
    """The cases needing a run and its export."""
    return [pictures_over_users_file(w, run_dir), export_killed_between_renames(w, run_dir, export_dir),
            two_exports_at_once(w, run_dir)]
