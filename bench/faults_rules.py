"""The rule cases of `python -m bench.faults` (`--only rules`): crafted manifests,
look-alike folders, hostile predictions files, oversized serving inputs and a TFLite
model fed another shape, each tried the way a careless user or an attacker would,
against the rules of WORKSPACE.md's "Guarantees": a name read from a file never leads
outside its directory; the project only takes for its own what carries its mark;
every input has a bound; bad input is one line, never a wrong result. Every case says
what happened, how long it took, and whether the bystander file (the thing that must
not be touched) is byte for byte what it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib

from bench.faults import REPO, Case, env, last_line, run, shard_digests, trainer_args

BYSTANDER = b"a file of the user's, not the project's\n"
# A command given a crafted input answers within this (the hangs these cases guard
# against never end); generous, because each command starts Python and often TensorFlow.
BOUNDED_SECONDS = 60


def timed(*args: str, **extra_env) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = run(*args, timeout=BOUNDED_SECONDS * 3, **extra_env)
    return result, time.monotonic() - started


def one_line(result: subprocess.CompletedProcess, says: str) -> bool:
    """Exit 1 with a last stderr line `error: ...` holding `says`, and no traceback."""
    line = last_line(result.stderr)
    return result.returncode == 1 and line.startswith("error: ") and says in line \
        and "Traceback" not in result.stderr


def digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def crafted_copy(w: str, good: str, name: str, edit) -> str:
    """A copy of the good data set whose manifest.json `edit` changed, as a hand would."""
    copy = os.path.join(w, name)
    shutil.copytree(good, copy, ignore=shutil.ignore_patterns("features"))
    path = os.path.join(copy, "manifest.json")
    with open(path) as f:
        manifest = json.load(f)
    edit(manifest)
    with open(path, "w") as f:
        json.dump(manifest, f, indent=2)
    return copy


def observed(result: subprocess.CompletedProcess, seconds: float, rest: str, w: str) -> str:
    """Exit status, time, the error line (work directory paths shortened) and what was kept."""
    line = last_line(result.stderr).replace(w + "/", "")
    return f"exit {result.returncode} in {seconds:.1f} s: {line[:150]}; {rest}"


# --------------------------------------------------------------------------- rule 1

def split_name_that_is_a_path(w: str, good: str) -> Case:
    case = Case("rule 1: a manifest split name `../victim`, then trainer.features",
                "one line; the file `victim-*.tfrecord` beside the data set untouched")
    victim = os.path.join(w, "victim-00000-of-00001.tfrecord")
    with open(victim, "wb") as f:
        f.write(BYSTANDER)
    copy = crafted_copy(w, good, "split-path", lambda m: m["splits"].update(
        {"../victim": m["splits"].pop("train")}))
    result, seconds = timed("trainer.features", f"--records={copy}", "--weights=none", "--variant=tiny")
    kept = open(victim, "rb").read() == BYSTANDER
    case.observed = observed(result, seconds, f"victim {'untouched' if kept else 'CHANGED OR REMOVED'}", w)
    case.ok = one_line(result, "is not a plain name") and kept and seconds < BOUNDED_SECONDS
    return case


def shard_file_outside(w: str, good: str) -> Case:
    case = Case("rule 1: a manifest shard file `../outside/...` (a FIFO there), then records verify",
                "one line in bounded time; nothing outside opened")
    outside = os.path.join(w, "outside")
    os.makedirs(outside)
    os.mkfifo(os.path.join(outside, "train-00000-of-00001.tfrecord"))   # opening it would hang
    copy = crafted_copy(w, good, "shard-outside", lambda m: m["splits"]["train"]["shards"][0].update(
        file="../outside/train-00000-of-00001.tfrecord"))
    result, seconds = timed("records", "verify", copy)
    named = [line for line in (result.stdout + result.stderr).splitlines() if "is not a plain file name" in line]
    case.observed = f"exit {result.returncode} in {seconds:.1f} s: {(named or [last_line(result.stderr)])[0].replace(w + '/', '')[:150]}"
    case.ok = result.returncode == 1 and len(named) == 1 and seconds < BOUNDED_SECONDS
    return case


def count_of_a_billion(w: str, good: str) -> Case:
    case = Case("rule 3: a manifest count of 10^9 (split total and shard agree), then trainer --dry_run",
                "one line naming the shard's bytes; no run directory made")
    def edit(m):
        train = m["splits"]["train"]
        train["count"] += 10**9 - train["shards"][0]["count"]
        train["shards"][0]["count"] = 10**9
    copy = crafted_copy(w, good, "billion", edit)
    run_dir = os.path.join(w, "runs", "billion")
    result, seconds = timed(*trainer_args(copy, run_dir, "--dry_run"))
    case.observed = observed(result, seconds, f"run dir {'MADE' if os.path.exists(run_dir) else 'not made'}", w)
    case.ok = one_line(result, "does not fit its") and not os.path.exists(run_dir) and seconds < BOUNDED_SECONDS
    return case


# --------------------------------------------------------------------------- rule 2

def users_folder_beside_ingest(w: str, good: str, suffix: str) -> Case:
    """suffix: "trash" (beside a new --out) or "old" (beside an existing data set)."""
    role = "trash" if suffix == "trash" else "old copy"
    case = Case(f"rule 2: a user's folder `.NAME.{suffix}` beside ingest --out"
                + (" (a new --out)" if suffix == "trash" else " (a data set of ours)"),
                "one line; the user's folder and the --out untouched")
    out = os.path.join(w, f"lookalike-{suffix}")
    if suffix == "old":
        shutil.copytree(good, out, ignore=shutil.ignore_patterns("features"))
    before = shard_digests(out)
    mine = os.path.join(w, f".lookalike-{suffix}.{suffix}")
    os.makedirs(mine)
    with open(os.path.join(mine, "thesis.pdf"), "wb") as f:
        f.write(BYSTANDER)
    result, seconds = timed("ingest", "--src", os.path.join(w, "src"), "--out", out, "--image_size", "32")
    kept = os.listdir(mine) == ["thesis.pdf"] and open(os.path.join(mine, "thesis.pdf"), "rb").read() == BYSTANDER
    same = shard_digests(out) == before and (suffix == "old" or not os.path.exists(out))
    case.observed = observed(result, seconds, f"folder {'untouched' if kept else 'CHANGED'}, "
                                              f"--out {'untouched' if same else 'CHANGED'}", w)
    case.ok = one_line(result, f"is in the way of the {role}") and kept and same
    return case


def export_lookalike(w: str, run_dir: str) -> Case:
    case = Case("rule 2: serving.export --out the user's SavedModel (export.json, saved_model.pb, variables/; no marker)",
                "one line; the folder untouched")
    out = os.path.join(w, "exports", "mine")
    os.makedirs(os.path.join(out, "variables"))
    names = ("export.json", "saved_model.pb", "variables/variables.index")
    for name in names:
        with open(os.path.join(out, name), "wb") as f:
            f.write(BYSTANDER)
    result, seconds = timed("serving.export", f"--model_dir={run_dir}", f"--out={out}")
    kept = sorted(os.listdir(out)) == ["export.json", "saved_model.pb", "variables"] and all(
        open(os.path.join(out, n), "rb").read() == BYSTANDER for n in names)
    case.observed = observed(result, seconds, f"folder {'untouched' if kept else 'CHANGED'}", w)
    case.ok = one_line(result, "is not an export this project wrote") and kept
    return case


# --------------------------------------------------------------------------- rules 2 and 3: predictions file

# serving.predict's predictions file, opened as predict opens it (serving.output.open_output),
# in a process of its own so that a read that never ends is a timeout, not a hung bench.
OPEN_OUTPUT = r"""
import json, resource, sys, time
from serving.output import PredictError, open_output
started = time.monotonic()
try:
    out, done = open_output(sys.argv[1])
    out.close()
    result = "opened"
except PredictError as e:
    result = "error: " + str(e)
print(json.dumps({"result": result, "seconds": time.monotonic() - started,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def hostile_output(w: str, kind: str) -> Case:
    """kind: notes (a file without a final newline), link (a symlink to a file elsewhere),
    zero (/dev/zero) or fifo."""
    what = {"notes": "a notes file without a final newline", "link": "a symlink to a file elsewhere",
            "zero": "/dev/zero", "fifo": "a FIFO"}[kind]
    case = Case(f"rule {2 if kind in ('notes', 'link') else 3}: predict's output file is {what}",
                "one line in bounded time; nothing read or changed")
    folder = os.path.join(w, "outputs", kind)
    os.makedirs(folder)
    path, watched = os.path.join(folder, "preds.jsonl"), None
    if kind in ("notes", "link"):
        watched = path if kind == "notes" else os.path.join(folder, "elsewhere.txt")
        with open(watched, "wb") as f:
            f.write(BYSTANDER.rstrip(b"\n"))
        if kind == "link":
            os.symlink(watched, path)
    elif kind == "zero":
        path = "/dev/zero"
    else:
        os.mkfifo(path)
    before = digest(watched) if watched else None
    started = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-c", OPEN_OUTPUT, path], cwd=REPO, env=env(),
                              capture_output=True, text=True, timeout=BOUNDED_SECONDS)
        answer = json.loads(last_line(proc.stdout) or "{}")
    except subprocess.TimeoutExpired:
        case.observed = f"HANG: no answer after {BOUNDED_SECONDS} s"
        return case
    seconds = time.monotonic() - started
    result = answer.get("result", last_line(proc.stderr))
    kept = watched is None or digest(watched) == before
    marked = [n for n in os.listdir(folder) if n.endswith(".dex-age")]
    case.observed = (f"{result.replace(folder + '/', '')[:150]} ({answer.get('seconds', 0) * 1000:.0f} ms, "
                     f"{seconds:.1f} s with Python, peak RSS {answer.get('peak_mb', 0):.0f} MB); "
                     f"{'untouched' if kept and not marked else 'CHANGED'}")
    case.ok = result.startswith("error: ") and "\n" not in result and kept and not marked \
        and answer.get("seconds", BOUNDED_SECONDS) < 5
    return case


# --------------------------------------------------------------------------- rule 3: serving input

def big_png(path: str, side: int) -> None:
    """A real side x side 8-bit grey PNG (all black), written a row at a time: about 100 KB
    on disk, side * side bytes once decoded (x4 as RGBA)."""
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data
                                + struct.pack(">I", zlib.crc32(kind + data)))
    packer, row, parts = zlib.compressobj(9), b"\0" * (side + 1), []
    for _ in range(side):
        parts.append(packer.compress(row))
    parts.append(packer.flush())
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))


# The export in a process of its own: a small crop first (it answers), then the big one.
SERVE = r"""
import json, resource, sys, time
import tensorflow as tf
peak_mb = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
small = tf.io.encode_png(tf.zeros([48, 40, 3], tf.uint8)).numpy()
small_age = float(serve(image_bytes=tf.constant([small]))["apparent_age"][0])
before, started = peak_mb(), time.monotonic()
try:
    serve(image_bytes=tf.constant([open(sys.argv[2], "rb").read()]))
    result = "ANSWERED"
except tf.errors.InvalidArgumentError as e:
    result = "refused: " + next((l for l in e.message.splitlines() if "pixel limit" in l), e.message)[:200]
print(json.dumps({"result": result, "seconds": time.monotonic() - started, "small_age": small_age,
                  "before_mb": before, "peak_mb": peak_mb()}))
"""


def oversized_serving_input(w: str, export_dir: str, side: int = 10000) -> Case:
    grow_limit_mb = 200        # the decoded image alone would be 400 MB (RGBA)
    case = Case(f"rule 3: a {side}x{side} PNG to the SavedModel's serving_default",
                f"refused from its header: under 5 s and {grow_limit_mb} MB more peak RSS; a small crop answers")
    png = os.path.join(w, f"big-{side}.png")
    big_png(png, side)
    try:
        proc = subprocess.run([sys.executable, "-c", SERVE, export_dir, png], cwd=REPO, env=env(),
                              capture_output=True, text=True, timeout=BOUNDED_SECONDS * 3)
        answer = json.loads(last_line(proc.stdout) or "{}")
    except subprocess.TimeoutExpired:
        case.observed = f"HANG: no answer after {BOUNDED_SECONDS * 3} s"
        return case
    if not answer:
        case.observed = f"exit {proc.returncode}: {last_line(proc.stderr)[:100]}"
        return case
    grown = answer["peak_mb"] - answer["before_mb"]
    says = answer["result"].split("image_bytes: ")[-1].split(" (")[0]
    case.observed = (f"{os.path.getsize(png) / 1e3:.0f} KB file {'refused' if answer['result'].startswith('refused') else 'ANSWERED'} "
                     f"in {answer['seconds']:.2f} s ({says}); peak RSS {answer['peak_mb']:.0f} MB, "
                     f"+{grown:.0f} MB over the loaded model; small crop: age {answer['small_age']:.1f}")
    case.ok = answer["result"].startswith("refused") and "pixel limit" in answer["result"] \
        and answer["seconds"] < 5 and grown < grow_limit_mb and 0 <= answer["small_age"] <= 100
    return case


# model.tflite under the LiteRT interpreter, fed the right shape and then others.
LITE = r"""
import json, sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
path, size = sys.argv[1], int(sys.argv[2])
answers = {}
for shape in [(1, size, size, 3), (1, 2 * size, 2 * size, 3), (size, size, 3), (1, size // 2, 2 * size, 3)]:
    try:
        out = Interpreter(model_path=path).get_signature_runner("serve")(pixels=np.zeros(shape, np.uint8))
        answers["x".join(map(str, shape))] = f"{len(out['apparent_age'])} age(s)"
    except RuntimeError:
        answers["x".join(map(str, shape))] = "error"
print(json.dumps(answers))
"""


def tflite_wrong_shape(export_dir: str) -> Case:
    case = Case("rule 3: model.tflite fed other shapes than its signature's [B, S, S, 3]",
                "the right shape answers; every other one is an error, never a wrong number of ages")
    size = json.load(open(os.path.join(export_dir, "export.json")))["input_size"]
    proc = subprocess.run([sys.executable, "-c", LITE, os.path.join(export_dir, "model.tflite"), str(size)],
                          cwd=REPO, env=env(), capture_output=True, text=True, timeout=BOUNDED_SECONDS * 3)
    answers = json.loads(last_line(proc.stdout) or "{}")
    case.observed = ", ".join(f"{shape}: {answer}" for shape, answer in answers.items()) \
        or f"exit {proc.returncode}: {last_line(proc.stderr)[:100]}"
    values = list(answers.values())
    case.ok = len(values) == 4 and values[0] == "1 age(s)" and values[1:] == ["error"] * 3
    return case


# --------------------------------------------------------------------------- all of them

def rule_cases(w: str, good: str) -> list[Case]:
    """Every rule case, on the work directory `w` holding the sample `src` and the data set `good`."""
    cases = [split_name_that_is_a_path(w, good), shard_file_outside(w, good), count_of_a_billion(w, good),
             users_folder_beside_ingest(w, good, "trash"), users_folder_beside_ingest(w, good, "old")]
    cases += [hostile_output(w, kind) for kind in ("notes", "link", "zero", "fifo")]
    from bench.faults_marks import mark_cases, serving_mark_cases
    cases += mark_cases(w, good)
    run_dir, export_dir = os.path.join(w, "runs", "rules"), os.path.join(w, "exports", "rules")
    trained = run(*trainer_args(good, run_dir, "--epochs=1"))
    exported = run("serving.export", f"--model_dir={run_dir}", f"--out={export_dir}", "--tflite=float32") \
        if trained.returncode == 0 else trained
    if exported.returncode:
        cases.append(Case("rule 2/3: a run and its export for the serving cases", "exit 0",
                          f"exit {exported.returncode}: {last_line(exported.stderr)[:100]}"))
        return cases
    from bench.faults_inputs import input_cases
    return cases + [export_lookalike(w, run_dir), oversized_serving_input(w, export_dir),
                    oversized_serving_input(w, export_dir, 9400), tflite_wrong_shape(export_dir)] \
        + serving_mark_cases(w, run_dir, export_dir) + input_cases(w, good, run_dir)
