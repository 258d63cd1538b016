"""Train and score on a folder of real faces, as the "Real faces" table of docs/training.md does.

    python -m bench.real --src crop_part1 [--flagfile small.flags] [--out bench_out/real]
                         [--image_size 64] [-- more trainer flags, e.g. --variant=tiny]

Runs the user's commands in subprocesses: `python -m ingest --src SRC` (any supported
source, auto-detected; --image_size px, the default random split), then `python -m
trainer --flagfile=FLAGFILE --records=OUT/shards --model_dir=OUT/run --noevaluate`
plus anything after `--`, then scores best.keras on the test split with
trainer.evaluate (report.json, predictions.csv in the run). Prints one table: records
per split, ingest and training wall time, test MAE and CS(5), the MAE of always
answering the training mean age (trainer.evaluate's baseline), the MAE per age band,
the epoch best.keras comes from, the training's CPU time, and the machine's load
(other processes on the same cores stretch the wall time: say so when comparing).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # this checkout
# Age bands of the table (inclusive): children, teenagers, young adults, adults, middle age, older.
AGE_BANDS = ((0, 12), (13, 17), (18, 24), (25, 39), (40, 59), (60, 100))


def band_name(lo: int, hi: int) -> str:
    return f"{lo}+" if hi >= 100 else f"{lo}-{hi}"


def mae_by_band(true_age: list[float], expected: list[float]) -> dict:
    """{band: (MAE, faces)} over AGE_BANDS; a band without faces is left out."""
    out = {}
    for lo, hi in AGE_BANDS:
        errors = [abs(e - t) for t, e in zip(true_age, expected) if lo <= t <= hi]
        if errors:
            out[band_name(lo, hi)] = (sum(errors) / len(errors), len(errors))
    return out


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(label: str, *args: str) -> tuple[float, float]:
    """Run `python -m ARGS` in this checkout; returns its wall time and CPU time (user +
    system, all threads: on a machine shared with other work the wall time grows, the
    CPU time much less). A failure ends the benchmark with its last lines."""
    env = {**os.environ, "PYTHONPATH": HERE + os.pathsep + os.environ.get("PYTHONPATH", "")}
    start, cpu = time.monotonic(), _children_cpu_s()
    result = subprocess.run([sys.executable, "-m", *args], cwd=HERE, env=env, capture_output=True, text=True)
    took, cpu = time.monotonic() - start, _children_cpu_s() - cpu
    if result.returncode != 0:
        sys.exit(f"error: {label} failed ({' '.join(args)}):\n{result.stderr[-2000:]}")
    print(f"{label}: {took:.0f} s wall, {cpu:.0f} s CPU", file=sys.stderr, flush=True)
    return took, cpu


def main(args: argparse.Namespace) -> int:
    shards, run_dir = os.path.join(args.out, "shards"), os.path.join(args.out, "run")
    if os.path.exists(run_dir):        # a fresh run every time: the table is one training
        shutil.rmtree(run_dir)
    extra = [a for a in args.trainer_args if a != "--"]
    ingest_s, _ = run("ingest", "ingest", f"--src={args.src}", f"--out={shards}", f"--image_size={args.image_size}")
    train_s, train_cpu = run("train", "trainer", f"--flagfile={args.flagfile}", f"--records={shards}",
                  f"--model_dir={run_dir}", "--noevaluate", *extra)
    load = os.getloadavg()
    start = time.monotonic()

    from trainer import evaluate      # TensorFlow loads here, after the subprocesses
    from storage.run_dir import OWN_REPORT, RunDir

    report = evaluate.evaluate_run(run_dir, quiet=True)
    eval_s = time.monotonic() - start
    with open(RunDir(run_dir).file(OWN_REPORT["predictions"])) as f:
        rows = list(csv.DictReader(f))
    bands = mae_by_band([float(r["true_age"]) for r in rows], [float(r["expected_age"]) for r in rows])
    manifest = json.load(open(os.path.join(shards, "manifest.json")))
    counts = {s: manifest["splits"][s]["count"] for s in ("train", "val", "test")}
    best = json.load(open(RunDir(run_dir).file("best.json")))
    history = RunDir(run_dir).read_history()

    print(f"\n{args.src}: {sum(counts.values())} faces (train {counts['train']}, val {counts['val']}, "
          f"test {counts['test']}), {args.image_size} px; {args.flagfile} {' '.join(extra)}".rstrip())
    print(f"{os.cpu_count()} CPU cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
          f"(1/5/15 min) at the end of training\n")
    print("| ingest s | train s (wall) | train s (CPU) | epochs | best epoch | evaluate s | test MAE | CS(5) "
          "| mean predictor MAE | " + " | ".join(f"MAE {b}" for b in bands) + " |")
    print("|" + "---:|" * (9 + len(bands)))
    print(f"| {ingest_s:.0f} | {train_s:.0f} | {train_cpu:.0f} | {len(history)} | {best.get('epoch', '?')} "
          f"| {eval_s:.0f} | {report['mae']:.2f} "
          f"| {report['cs5']:.3f} | {report['baseline_mae_predicting_train_mean']:.2f} | "
          + " | ".join(f"{m:.1f} (n={n})" for m, n in bands.values()) + " |")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.real", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", required=True, help="A folder (or CSV) of real faces, any source ingest reads.")
    p.add_argument("--flagfile", default="small.flags", help="Trainer flagfile (default small.flags).")
    p.add_argument("--out", default=os.path.join("bench_out", "real"),
                   help="Holds shards/ and run/ (run/ is replaced every time).")
    p.add_argument("--image_size", type=int, default=64, help="Ingest's stored side (small.flags trains at 64).")
    p.add_argument("trainer_args", nargs=argparse.REMAINDER, help="After --: more trainer flags.")
    return p


if __name__ == "__main__":
    import entry
    entry.run_parsed(main, parser())
