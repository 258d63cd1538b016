"""The fault campaign's kill / corrupt / concurrency cases, replayed on the sample.

    python -m bench.faults [--out bench_out/faults] [--seed 0] [--only kill|rules]

Every case runs the real commands in subprocesses, as a user (or an unlucky
machine) would: `kill -9` from outside at a random moment, a byte flipped in a
finished file, two commands on one output, a peer that never starts. It prints
one row per case: what the project promises, what happened, and whether the
two agree. The data is the synthetic sample (`python -m ingest.sample`, 1500
rows, faces 40-80 px) ingested at 32 px, and the trainer runs `cpu.flags`
(the tiny variant). The rule cases (bench.faults_rules: crafted manifests,
look-alike folders, hostile predictions files, oversized serving inputs, a TFLite
model fed another shape; bench.faults_marks: users' files and links where the
project's lock, mark, pictures and outputs go, and the states a kill leaves) follow.
About 2-4 minutes for `--only kill`, 3-10 for `--only rules` on 2 shared cores;
the exit status is 1 if any case failed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import dataclasses
import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU_FLAGS = os.path.join(REPO, "cpu.flags")
SAMPLE_ROWS = 1500
INGEST = ("--image_size", "32", "--shard_mb", "0.02", "--workers", "2")
TRAIN_EPOCHS = 20
GROUPS = {"kill": "kill -9, corrupted files, two writers, a lost peer",
          "rules": "crafted manifests, look-alike folders, hostile outputs, oversized inputs"}


@dataclasses.dataclass
class Case:
    name: str
    expected: str
    observed: str = ""
    ok: bool = False


def env(**extra) -> dict:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def run(*args: str, timeout: float = 300, **extra_env) -> subprocess.CompletedProcess:
    """`python -m ARGS` from the repository root, to completion."""
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env(**extra_env),
                          capture_output=True, text=True, timeout=timeout)


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def wait_for(condition, timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return False


def flip_a_byte(path: str) -> None:
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))


def shard_digests(directory: str) -> dict:
    """{shard file: sha256} from a data set's manifest (None if it has none)."""
    try:
        manifest = json.load(open(os.path.join(directory, "manifest.json")))
    except (OSError, ValueError):
        return {}
    return {s["file"]: s["sha256"] for split in manifest["splits"].values() for s in split["shards"]}


def history_epochs(run_dir: str) -> list[int]:
    try:
        with open(os.path.join(run_dir, "history.csv")) as f:
            return [int(row["epoch"]) for row in csv.DictReader(f)]
    except OSError:
        return []


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def trainer_args(records: str, run_dir: str, *extra: str) -> list[str]:
    return ["trainer", f"--flagfile={CPU_FLAGS}", f"--records={records}", f"--model_dir={run_dir}",
            "--noevaluate", *extra]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- ingest cases

def ingest_killed_then_rerun(w: str, rng: random.Random, good: str) -> Case:
    case = Case("ingest: kill -9 mid-ingest, then rerun",
                "rerun exits 0; every shard byte-identical to an uninterrupted ingest")
    out = os.path.join(w, "killed")
    staging = os.path.join(w, ".killed.staging")
    proc = start("ingest", "--src", os.path.join(w, "src"), "--out", out, *INGEST)
    wait_for(lambda: os.path.exists(staging) or proc.poll() is not None, 60)
    time.sleep(rng.uniform(0.05, 0.4))
    alive = proc.poll() is None
    proc.kill()
    proc.communicate()
    if not alive:
        case.observed = "ingest finished before the kill (no fault injected)"
        return case
    rerun = run("ingest", "--src", os.path.join(w, "src"), "--out", out, *INGEST)
    same = shard_digests(out) == shard_digests(good) and shard_digests(out) != {}
    resumed = "resuming" in rerun.stdout
    case.observed = (f"killed with {'a staging dir' if os.path.exists(staging) or resumed else 'nothing'} left; "
                     f"rerun exit {rerun.returncode}{', resumed' if resumed else ''}, "
                     f"{len(shard_digests(out))} shards {'identical' if same else 'DIFFERENT'}")
    case.ok = rerun.returncode == 0 and same
    return case


def two_ingests_at_once(w: str) -> Case:
    case = Case("ingest: two at once into one --out (different --jpeg_quality)",
                "one finishes, the other is refused at once naming the holder; verify clean")
    out = os.path.join(w, "two")
    procs = [start("ingest", "--src", os.path.join(w, "src"), "--out", out, *INGEST, "--jpeg_quality", q)
             for q in ("90", "50")]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    codes = sorted(r[2] for r in results)
    refused = [last_line(r[1]) for r in results if r[2] != 0]
    verify = run("records", "verify", out)
    case.observed = (f"exit codes {codes}; refused: {refused[0][:90] if refused else '-'}; "
                     f"verify exit {verify.returncode}")
    case.ok = codes == [0, 1] and "already being written by pid" in (refused[0] if refused else "") \
        and verify.returncode == 0
    return case


def failed_reingest_keeps_the_old(w: str, good: str) -> Case:
    case = Case("ingest: failed re-ingest (--min_face_score 100) over a good data set",
                "one-line error; the old data set unchanged and verified")
    before = shard_digests(good)
    result = run("ingest", "--src", os.path.join(w, "src"), "--out", good, *INGEST, "--min_face_score", "100")
    verify = run("records", "verify", good)
    case.observed = (f"exit {result.returncode}: {last_line(result.stderr)[:80]}; old set "
                     f"{'unchanged' if shard_digests(good) == before else 'CHANGED'}, verify exit {verify.returncode}")
    case.ok = result.returncode == 1 and last_line(result.stderr).startswith("error: ") \
        and "Traceback" not in result.stderr and shard_digests(good) == before and verify.returncode == 0
    return case


def dead_decode_worker(w: str, when: str) -> Case:
    """when: "decoding" (once the staging directory exists) or "start-up" (as soon as the
    pool's processes exist, while it is still starting)."""
    case = Case(f"ingest: kill -9 of one decode worker ({when})", "ingest ends within 30 s with one line")
    out = os.path.join(w, f"dead-{when}")
    staging = os.path.join(w, f".dead-{when}.staging")
    proc = start("ingest", "--src", os.path.join(w, "src"), "--out", out, *INGEST)
    started = time.monotonic()
    if when == "decoding":
        wait_for(lambda: os.path.exists(staging) or proc.poll() is not None, 60, step=0.005)
    else:
        wait_for(lambda: len(children(proc.pid)) >= 2 or proc.poll() is not None, 60, step=0.002)
    workers = children(proc.pid)
    if not workers:
        proc.communicate()
        case.observed = "no worker seen before ingest ended"
        return case
    os.kill(workers[0], signal.SIGKILL)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        case.observed = "HANG: still running after 60 s"
        return case
    seconds = time.monotonic() - started
    case.observed = f"exit {proc.returncode} after {seconds:.1f} s: {last_line(err)[:90]}"
    case.ok = proc.returncode == 1 and seconds < 30 and last_line(err).startswith("error: ") \
        and "Traceback" not in err
    return case


def corrupt_shard_caught_by_verify(w: str, good: str) -> Case:
    case = Case("records verify: one byte flipped in a shard", "verify exits 1 naming the shard and record")
    copy = os.path.join(w, "corrupt")
    shutil.copytree(good, copy, ignore=shutil.ignore_patterns("features"))
    shard = sorted(glob.glob(os.path.join(copy, "train-*.tfrecord")))[0]
    flip_a_byte(shard)
    result = run("records", "verify", copy)
    named = [line for line in (result.stdout + result.stderr).splitlines() if shard in line]
    problem = next((line for line in named if "record #" in line), named[0] if named else "")
    case.observed = f"exit {result.returncode}, {len(named)} problems: {problem.replace(copy + '/', '')[:110]}"
    case.ok = result.returncode != 0 and "record #" in problem
    return case


# --------------------------------------------------------------------------- trainer cases

def trainer_killed_at_random_points(w: str, rng: random.Random, good: str, kills: int = 3) -> tuple[Case, str]:
    case = Case(f"trainer: kill -9 at {kills} random points, then the same command",
                f"each rerun resumes; history.csv holds epochs 1..{TRAIN_EPOCHS} once each")
    run_dir = os.path.join(w, "runs", "kill")
    args = trainer_args(good, run_dir, f"--epochs={TRAIN_EPOCHS}")
    at, resumed = [], 0
    for _ in range(kills):
        done = len(history_epochs(run_dir))
        proc = start(*args)
        # Once this run has completed an epoch of its own, a random moment within the next
        # few epochs: mid-step, mid-validation, or while best.keras/history/checkpoint are written.
        wait_for(lambda: len(history_epochs(run_dir)) > done or proc.poll() is not None, 180)
        time.sleep(rng.uniform(0.0, 1.5))
        proc.kill()
        out, _ = proc.communicate()
        resumed += "Resuming" in out
        at.append(len(history_epochs(run_dir)))
    final = run(*args)
    resumed += "Resuming" in final.stdout
    epochs = history_epochs(run_dir)
    case.observed = (f"killed after epochs {at}; {resumed} resumes; final exit {final.returncode}, "
                     f"history {epochs[:1]}..{epochs[-1:]} ({len(epochs)} rows)")
    case.ok = final.returncode == 0 and epochs == list(range(1, TRAIN_EPOCHS + 1)) and \
        resumed == kills and all(0 < a < TRAIN_EPOCHS for a in at)
    return case, run_dir


def corrupt_latest_checkpoint(run_dir: str, good: str) -> Case:
    case = Case("trainer: one byte flipped in the latest checkpoint",
                f"falls back to ckpt-{TRAIN_EPOCHS - 1}, says so, retrains epoch {TRAIN_EPOCHS}")
    flip_a_byte(glob.glob(os.path.join(run_dir, "checkpoints", f"ckpt-{TRAIN_EPOCHS}.data-*"))[0])
    result = run(*trainer_args(good, run_dir, f"--epochs={TRAIN_EPOCHS}"))
    fell_back = f"Restored ckpt-{TRAIN_EPOCHS - 1} instead of ckpt-{TRAIN_EPOCHS}" in result.stdout
    retrained = f"epoch {TRAIN_EPOCHS}/{TRAIN_EPOCHS}" in result.stdout
    case.observed = (f"exit {result.returncode}; {'fell back to ckpt-%d' % (TRAIN_EPOCHS - 1) if fell_back else 'NO fallback'}"
                     f"; epoch {TRAIN_EPOCHS} {'retrained' if retrained else 'NOT retrained'}; "
                     f"history {len(history_epochs(run_dir))} rows")
    case.ok = result.returncode == 0 and fell_back and retrained and \
        history_epochs(run_dir) == list(range(1, TRAIN_EPOCHS + 1))
    return case


def lost_checkpoint_index(run_dir: str, good: str) -> Case:
    case = Case("trainer: checkpoints/checkpoint index deleted",
                f"resumes after epoch {TRAIN_EPOCHS}: history kept, the last two checkpoints kept")
    os.remove(os.path.join(run_dir, "checkpoints", "checkpoint"))
    result = run(*trainer_args(good, run_dir, f"--epochs={TRAIN_EPOCHS + 1}"))
    kept = sorted(n for n in os.listdir(os.path.join(run_dir, "checkpoints")) if n.endswith(".index"))
    case.observed = (f"exit {result.returncode}; {'Resuming after epoch %d' % TRAIN_EPOCHS if f'after epoch {TRAIN_EPOCHS}' in result.stdout else 'NO resume line'}"
                     f"; history {len(history_epochs(run_dir))} rows; checkpoints {kept}")
    case.ok = result.returncode == 0 and f"after epoch {TRAIN_EPOCHS}" in result.stdout and \
        history_epochs(run_dir) == list(range(1, TRAIN_EPOCHS + 2)) and \
        kept == [f"ckpt-{TRAIN_EPOCHS}.index", f"ckpt-{TRAIN_EPOCHS + 1}.index"]
    return case


def damaged_feature_cache(good: str) -> Case:
    case = Case("feature cache: one byte flipped in a finished cache shard",
                "the damage is named and the cache rebuilt, never used")
    args = ("trainer.features", f"--records={good}", "--weights=none", "--variant=tiny")
    built = run(*args)
    cache = last_line(built.stdout)
    manifest = json.load(open(os.path.join(cache, "manifest.json")))
    flip_a_byte(os.path.join(cache, manifest["splits"]["train"]["shards"][0]["file"]))
    again = run(*args)
    named = next((line for line in again.stdout.splitlines() if "cannot be used" in line), "")
    rebuilt = "Feature cache: building" in again.stdout and "Feature cache: using" not in again.stdout
    case.observed = (f"exit {again.returncode}; {'sha256 mismatch named' if 'sha256 differs' in named else 'NOT named'}"
                     f"; {'rebuilt' if rebuilt else 'USED'}")
    case.ok = built.returncode == 0 and again.returncode == 0 and "sha256 differs" in named and rebuilt
    return case


def two_trainers_one_run_dir(w: str, good: str) -> Case:
    case = Case("trainer: a second trainer on the same --model_dir",
                "refused at once with one line naming the directory and the holder")
    run_dir = os.path.join(w, "runs", "busy")
    first = start(*trainer_args(good, run_dir, "--epochs=500"))
    try:
        wait_for(lambda: os.path.exists(os.path.join(run_dir, "flags.txt")), 120)
        started = time.monotonic()
        second = run(*trainer_args(good, run_dir, "--epochs=500"))
        seconds = time.monotonic() - started
    finally:
        first.kill()
        first.communicate()
    line = last_line(second.stderr)
    case.observed = f"exit {second.returncode} after {seconds:.1f} s: {line.replace(w + '/', '')[:100]}"
    case.ok = second.returncode == 1 and f"{run_dir}: already being written by pid {first.pid}" in line
    return case


def other_records_on_resume(w: str, run_dir: str, good: str) -> Case:
    case = Case("trainer: resume with another --records (a copy elsewhere)", "refused with one line")
    copy = os.path.join(w, "good-copy")
    shutil.copytree(good, copy, ignore=shutil.ignore_patterns("features"))
    result = run(*trainer_args(copy, run_dir, f"--epochs={TRAIN_EPOCHS + 2}"))
    line = last_line(result.stderr)
    case.observed = f"exit {result.returncode}: {line.replace(w + '/', '')[:110]}"
    case.ok = result.returncode == 1 and "but the run in" in line and "Traceback" not in result.stderr
    return case


def unreachable_peer(w: str, good: str) -> Case:
    timeout = 5
    case = Case("trainer: --strategy=multi_worker, the peer never starts",
                f"one line naming the peer after --cluster_timeout={timeout}")
    tf_config = json.dumps({"cluster": {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]},
                            "task": {"type": "worker", "index": 0}})
    started = time.monotonic()
    result = run(*trainer_args(good, os.path.join(w, "runs", "mw"), "--strategy=multi_worker",
                               f"--cluster_timeout={timeout}"), timeout=120, TF_CONFIG=tf_config)
    seconds = time.monotonic() - started
    line = last_line(result.stderr)
    case.observed = f"exit {result.returncode} after {seconds:.1f} s: {line[:100]}"
    case.ok = result.returncode == 1 and "peer worker 1 at 127.0.0.1:" in line and seconds < 60
    return case


def kill_cases(w: str, rng: random.Random, good: str) -> list[Case]:
    cases = [ingest_killed_then_rerun(w, rng, good), two_ingests_at_once(w),
             failed_reingest_keeps_the_old(w, good), dead_decode_worker(w, "decoding"),
             dead_decode_worker(w, "start-up"),
             corrupt_shard_caught_by_verify(w, good)]
    # The cases that mostly wait (a refusal, a timeout, a cache build) run beside the
    # kill/resume chain, each on its own directory.
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        beside = [pool.submit(two_trainers_one_run_dir, w, good), pool.submit(unreachable_peer, w, good),
                  pool.submit(damaged_feature_cache, good)]
        killed, run_dir = trainer_killed_at_random_points(w, rng, good)
        cases += [killed, corrupt_latest_checkpoint(run_dir, good), lost_checkpoint_index(run_dir, good),
                  other_records_on_resume(w, run_dir, good)]
        cases += [f.result() for f in beside]
    return cases


# --------------------------------------------------------------------------- the table

def table(cases: list[Case], work_dir: str) -> str:
    """Markdown, paths shown relative to the work directory."""
    rows = ["| case | expected | observed | |", "|---|---|---|---|"]
    rows += [f"| {c.name} | {c.expected} | {c.observed.replace(work_dir + '/', '').replace('|', '/')} | "
             f"{'ok' if c.ok else 'FAILED'} |" for c in cases]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.join(REPO, "bench_out", "faults"), help="work directory (emptied)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random kill points")
    p.add_argument("--only", choices=GROUPS, help="run one group of cases: " + "; ".join(
        f"{name}: {what}" for name, what in GROUPS.items()))
    args = p.parse_args(argv)
    w, rng = os.path.abspath(args.out), random.Random(args.seed)
    started = time.monotonic()
    if os.path.exists(w):
        shutil.rmtree(w)
    os.makedirs(os.path.join(w, "runs"))
    sample = run("ingest.sample", "--out", os.path.join(w, "src"), "--n", str(SAMPLE_ROWS),
                 "--face_px", "40", "80", "--workers", "2")
    good = os.path.join(w, "good")
    ingest = run("ingest", "--src", os.path.join(w, "src"), "--out", good, *INGEST)
    if sample.returncode or ingest.returncode:
        print(sample.stderr[-2000:] + ingest.stderr[-2000:], file=sys.stderr)
        return 1

    cases = kill_cases(w, rng, good) if args.only in (None, "kill") else []
    if args.only in (None, "rules"):
        from bench.faults_rules import rule_cases
        cases += rule_cases(w, good)
    print(table(cases, w))
    print(f"\n{sum(c.ok for c in cases)} of {len(cases)} cases as expected in "
          f"{time.monotonic() - started:.0f} s (seed {args.seed})")
    return 0 if all(c.ok for c in cases) else 1


if __name__ == "__main__":
    sys.exit(main())
