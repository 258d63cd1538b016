"""How fast a command answers a flag mistake or a path of the wrong kind (not a test:
times vary by machine).

    python -m bench.startup [--rounds 3]

Each command of tests/test_entry_fast_flags.py's mistakes (flags, then paths: a
missing photo, an unknown split, images as --records, a data set as --model_dir, a
folder as --jsonl, cpu.flags without its data set, a typo in a run's name, ...), run
with `python -X importtime -m ...`: the wall time to its one-line answer (median of
--rounds, measured side by side in one run) and whether TensorFlow was imported;
against it, `python -c "import tensorflow"`, what every such mistake cost while it was
answered after TensorFlow loaded. The path mistakes run in bench_out/startup/, on a
data set of the synthetic sample (ingest.sample, ingest: no TensorFlow).
"""

from __future__ import annotations

import entry  # noqa: F401  first: sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads

import argparse
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

from test_entry_fast_flags import MISTAKES, path_mistakes  # noqa: E402  (the command lines the test checks)

OUT = os.path.join(REPO, "bench_out", "startup")


def sample_shards() -> str:
    """A data set of the synthetic sample in bench_out/startup (built once)."""
    shards = os.path.join(OUT, "shards", "wiki")
    if not os.path.isfile(os.path.join(shards, "manifest.json")):
        src = os.path.join(OUT, "wiki_crop")
        for argv in (["ingest.sample", "--out", src, "--n", "400"],
                     ["ingest", "--src", src, "--out", shards, "--image_size", "32", "--shard_mb", "0.05"]):
            subprocess.run([sys.executable, "-m", *argv], cwd=REPO, check=True, capture_output=True, timeout=600)
    return shards


def timed(argv: list[str], cwd: str = REPO) -> tuple[float, bool]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-X", "importtime", *argv], cwd=cwd, capture_output=True, text=True,
                            timeout=300)
    seconds = time.perf_counter() - start
    return seconds, any(line.rstrip().endswith("| tensorflow") for line in result.stderr.splitlines())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rows = [(" ".join(cmd), ["-m", *cmd], REPO) for cmd, _ in MISTAKES]
    paths = path_mistakes(OUT, sample_shards())
    rows += [(f"{name}: {' '.join(cmd).replace(REPO + os.sep, '')}", ["-m", *cmd], OUT)
             for name, (cmd, _) in paths.items()]
    rows.append(("import tensorflow (the cost of a mistake answered after it loads)", ["-c", "import tensorflow"],
                 REPO))
    times: dict[str, list[float]] = {name: [] for name, _, _ in rows}
    loaded: dict[str, bool] = {}
    for _ in range(args.rounds):              # rounds interleaved: a noisy machine hits every row alike
        for name, argv_, cwd in rows:
            seconds, tf = timed(argv_, cwd)
            times[name].append(seconds)
            loaded[name] = tf
    print(f"\n{os.cpu_count()} CPU cores, load avg {os.getloadavg()[0]:.1f}, median of {args.rounds}\n")
    print("| command line | answer in (s) | TensorFlow loaded |")
    print("|---|---:|---|")
    for name, _, _ in rows:
        print(f"| `{name}` | {statistics.median(times[name]):.2f} | {'yes' if loaded[name] else 'no'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
