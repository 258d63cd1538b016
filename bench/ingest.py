"""Ingest throughput and memory on synthetic samples (not a test: numbers vary by machine).

    python -m bench.ingest [--sizes 2000,20000] [--utkface 2000] [--baseline /tmp/base]
                           [--rounds 3] [--image_size 224] [--face_px 150 600] [--workers 0]

For each wiki sample size (ingest.sample, face crops of --face_px) and a UTKFace
sample (ingest.sample_sources, 200x200 crops), runs `python -m ingest` in a
subprocess while sampling the RSS of its whole process tree from /proc.  With
--baseline DIR (a checkout of other code, e.g. `git worktree add /tmp/base REV`),
each round runs that code and this one on the same sample, alternating, so a
shared machine's load hits both alike; each cell is the median over --rounds.
Prints a markdown table:
- images/s: the ingest's image phase (decode pool + writer), as it reports it;
- wall s: the whole command, including the metadata load and hashing;
- peak memory: max over time of the summed RSS of ingest and its workers
  (sampled every 0.05 s; an upper bound), and the peak RSS of the largest process
  (its VmHWM, which starts at exec: wait4's ru_maxrss would carry over the
  forking benchmark's own RSS);
- vs baseline: this code's images/s and wall time over the baseline's;
- load avg: the machine's 1-minute load after the row.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

from ingest import sample, sample_sources

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # this checkout


def _tree_rss_kb(root: int) -> tuple[int, int]:
    """Summed VmRSS of `root` and all its descendants (read from /proc): an upper
    bound, since pages shared after fork() count once per process.  (PSS would
    split them, but it also splits TF's library pages with every other TF
    process on the machine, so it moves with the neighbours' load.)  Also the
    largest VmHWM (peak RSS since exec) of any process in the tree."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    total = largest = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if line.startswith(("VmRSS", "VmHWM")))
            total += int(fields["VmRSS"].split()[0])
            largest = max(largest, int(fields["VmHWM"].split()[0]))
        except (OSError, KeyError, ValueError):
            pass
    return total, largest


def run_ingest(src: str, out: str, image_size: int, workers: int, code: str = HERE) -> dict:
    """`python -m ingest` of the checkout `code` on `src`: its rate, wall time and memory."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": code}
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "ingest", "--src", os.path.abspath(src),
                             "--out", os.path.abspath(out), "--image_size", str(image_size),
                             "--workers", str(workers)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                            cwd=code)
    peak = largest = 0
    while True:
        pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        total, high = _tree_rss_kb(proc.pid)
        peak, largest = max(peak, total), max(largest, high)
        time.sleep(0.05)
    wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout = proc.stdout.read()
    if proc.returncode != 0:
        raise SystemExit(f"ingest ({code}) failed on {src}:\n{stdout}")
    rate = float(re.search(r"(\d+) images/s", stdout).group(1))
    return {"rate": rate, "wall": wall, "tree_rss_mb": peak / 1024, "max_process_mb": largest / 1024}


def _median(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2000,20000", help="comma-separated wiki sample sizes")
    parser.add_argument("--utkface", type=int, default=2000, help="UTKFace sample size (0: none)")
    parser.add_argument("--baseline", default="", help="checkout of the code to compare with, "
                        "e.g. after `git worktree add /tmp/base REV` (wiki rows only)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per row (median)")
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=0, help="ingest --workers (0: all cores)")
    parser.add_argument("--out", default="bench_out/ingest", help="scratch folder (git-ignored)")
    parser.add_argument("--face_px", type=int, nargs=2, default=(150, 600), metavar=("MIN", "MAX"),
                        help="side range of the sample's face crops (the real wiki crops: mostly 150-600 px)")
    args = parser.parse_args(argv)
    cores = args.workers or os.cpu_count() or 1
    lo, hi = args.face_px
    jobs = []     # (label, entries, written, src, uses the baseline)
    for n in (int(s) for s in args.sizes.split(",") if s):
        src = os.path.join(args.out, f"sample{n}-px{lo}-{hi}", "wiki_crop")
        if not os.path.exists(os.path.join(src, "wiki.mat")):
            t = time.monotonic()
            sample.generate(src, n, face_px=(lo, hi))
            print(f"built {src} in {time.monotonic() - t:.1f}s", file=sys.stderr)
        jobs.append(("wiki", n, sample.expected_counts(n)["written"], src, bool(args.baseline)))
    if args.utkface:
        src = os.path.join(args.out, f"utkface{args.utkface}")
        if not os.path.isdir(src):
            sample_sources.generate("utkface", src, args.utkface)
        jobs.append(("utkface", args.utkface,
                     sample_sources.expected_counts("utkface", args.utkface)["written"], src, False))
    rows = []
    for label, n, written, src, compare in jobs:
        codes = [("this", HERE)] + ([("baseline", os.path.abspath(args.baseline))] if compare else [])
        runs: dict[str, list] = {name: [] for name, _ in codes}
        for r in range(args.rounds):
            for name, code in (codes if r % 2 == 0 else codes[::-1]):    # alternate who goes first
                runs[name].append(run_ingest(src, os.path.join(args.out, f"shards-{label}{n}-{name}"),
                                             args.image_size, cores, code))
        med = {name: _median(v) for name, v in runs.items()}
        for name, _ in codes[::-1]:
            m = med[name]
            vs = (f"{m['rate'] / med['baseline']['rate']:.2f} / {m['wall'] / med['baseline']['wall']:.2f}"
                  if compare and name == "this" else "")
            rows.append((label, n, written, name, m, vs, os.getloadavg()[0]))
        print(f"done {label} n={n}", file=sys.stderr)
    print(f"\n{cores} workers on {os.cpu_count()} cores, --image_size {args.image_size}, jpeg, "
          f"median of {args.rounds} alternating rounds\n")
    print("| data set | entries | records written | code | images/s | wall s | peak RSS sum, all "
          "processes (MB) | peak RSS, largest process (MB) | vs baseline (images/s / wall) | load avg |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for label, n, written, name, m, vs, load in rows:
        print(f"| {label} | {n} | {written} | {name} | {m['rate']:.0f} | {m['wall']:.1f} "
              f"| {m['tree_rss_mb']:.0f} | {m['max_process_mb']:.0f} | {vs} | {load:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
