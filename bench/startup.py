"""How fast a command answers a flag mistake (not a test: times vary by machine).

    python -m bench.startup [--rounds 3]

Each command of tests/test_entry_fast_flags.py's mistakes, run with `python -X
importtime -m ...`: the wall time to its one-line answer (median of --rounds,
measured side by side in one run) and whether TensorFlow was imported; against it,
`python -c "import tensorflow"`, what every flag mistake cost while the flags loaded
TensorFlow before parsing.
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

from test_entry_fast_flags import MISTAKES  # noqa: E402  (the same command lines the test checks)


def timed(argv: list[str]) -> tuple[float, bool]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-X", "importtime", *argv], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    seconds = time.perf_counter() - start
    return seconds, any(line.rstrip().endswith("| tensorflow") for line in result.stderr.splitlines())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rows = [(" ".join(cmd), ["-m", *cmd]) for cmd, _ in MISTAKES]
    rows.append(("import tensorflow (the cost of a mistake when flags loaded it)", ["-c", "import tensorflow"]))
    times: dict[str, list[float]] = {name: [] for name, _ in rows}
    loaded: dict[str, bool] = {}
    for _ in range(args.rounds):              # rounds interleaved: a noisy machine hits every row alike
        for name, argv_ in rows:
            seconds, tf = timed(argv_)
            times[name].append(seconds)
            loaded[name] = tf
    print(f"\n{os.cpu_count()} CPU cores, load avg {os.getloadavg()[0]:.1f}, median of {args.rounds}\n")
    print("| command line | answer in (s) | TensorFlow loaded |")
    print("|---|---:|---|")
    for name, _ in rows:
        print(f"| `{name}` | {statistics.median(times[name]):.2f} | {'yes' if loaded[name] else 'no'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
