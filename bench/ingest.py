"""Ingest throughput and memory on synthetic samples (not a test: numbers vary by machine).

    python -m bench.ingest [--sizes 2000,20000] [--image_size 224] [--face_px 150 600] [--workers 0] [--out bench_out/ingest]

For each sample size: builds the sample (ingest.sample), runs `python -m ingest`
in a subprocess while sampling the RSS of its whole process tree from /proc, and
times a single-process decode+resize+encode loop over the same kept files.
Prints a markdown table:
- images/s: the ingest's image phase (decode pool + writer), as it reports it;
- wall s: the whole command, including imports, .mat load and hashing;
- peak memory: max over time of the summed RSS of ingest and its workers
  (sampled every 0.05 s; an upper bound), and the peak RSS of the largest process
  (wait4 rusage of the ingest process and its reaped workers);
- ratio: images/s / (cores x single-process images/s); 1.0 = perfect scaling;
- independent images/s: `cores` processes each looping over 1/cores of the
  files, no coordination: the best the machine offers at that moment, so
  "ratio vs independent" isolates the pipeline's own overhead;
- load avg: the machine's 1-minute load after the row (other jobs skew the ratio).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import subprocess
import sys
import time

from ingest import clean, images, matfile, sample


def _tree_rss_kb(root: int) -> int:
    """Summed VmRSS of `root` and all its descendants (read from /proc): an upper
    bound, since pages shared after fork() count once per process.  (PSS would
    split them, but it also splits TF's library pages with every other TF
    process on the machine, so it moves with the neighbours' load.)"""
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
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


def run_ingest(src: str, out: str, image_size: int, workers: int) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "ingest", "--src", src, "--out", out,
                             "--image_size", str(image_size), "--workers", str(workers)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    peak = 0
    while True:
        # wait4, not Popen.poll: it also returns this child's own rusage
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        peak = max(peak, _tree_rss_kb(proc.pid))
        time.sleep(0.05)
    wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout = proc.stdout.read()
    if proc.returncode != 0:
        raise SystemExit(f"ingest failed on {src}:\n{stdout}")
    rate = float(re.search(r"(\d+) images/s", stdout).group(1))
    return {"rate": rate, "wall": wall, "tree_rss_mb": peak / 1024,
            "max_process_mb": usage.ru_maxrss / 1024}


def _loop(args: tuple[images.ImageSettings, list[str]]) -> int:
    """The decode+resize+encode loop ingest's workers run, over `paths`."""
    settings, paths = args
    for rel in paths:
        try:
            images.process(settings, rel)
        except images.SkipImage:
            pass
    return len(paths)


def baseline_rates(src: str, image_size: int, cores: int) -> tuple[float, float]:
    """(one process's images/s, `cores` independent processes' total images/s)
    over the kept files.  The second is what the machine really offers right
    now: on a shared box it can be far below cores x the first."""
    kept, _ = clean.clean(matfile.load(os.path.join(src, "wiki.mat")))
    paths = kept["full_path"].tolist()
    settings = images.ImageSettings(src=src, image_size=image_size)
    start = time.perf_counter()
    _loop((settings, paths))
    single = len(paths) / (time.perf_counter() - start)
    start = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(cores) as pool:
        pool.map(_loop, [(settings, paths[i::cores]) for i in range(cores)])
    return single, len(paths) / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2000,20000", help="comma-separated sample sizes")
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=0, help="ingest --workers (0: all cores)")
    parser.add_argument("--out", default="bench_out/ingest", help="scratch folder (git-ignored)")
    parser.add_argument("--face_px", type=int, nargs=2, default=(150, 600), metavar=("MIN", "MAX"),
                        help="side range of the sample's face crops (the real wiki crops: mostly 150-600 px)")
    args = parser.parse_args(argv)
    cores = args.workers or os.cpu_count() or 1
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        lo, hi = args.face_px
        src = os.path.join(args.out, f"sample{n}-px{lo}-{hi}", "wiki_crop")
        if not os.path.exists(os.path.join(src, "wiki.mat")):
            t = time.monotonic()
            sample.generate(src, n, face_px=(lo, hi))
            print(f"built {src} in {time.monotonic() - t:.1f}s", file=sys.stderr)
        result = run_ingest(src, os.path.join(args.out, f"shards{n}"), args.image_size, cores)
        single, independent = baseline_rates(src, args.image_size, cores)
        kept = sample.expected_counts(n)["kept"]
        rows.append((n, kept, result, single, result["rate"] / (cores * single),
                     independent, result["rate"] / independent, os.getloadavg()[0]))
        print(f"done n={n}", file=sys.stderr)
    print(f"\n{cores} workers on {os.cpu_count()} cores, --image_size {args.image_size}, jpeg\n")
    print("| entries | images (kept) | images/s | wall s | peak RSS sum, all processes (MB) | peak RSS, largest process (MB) "
          "| 1-process images/s | ratio | independent images/s | ratio vs independent | load avg |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, kept, r, single, ratio, independent, ratio_ind, load in rows:
        print(f"| {n} | {kept} | {r['rate']:.0f} | {r['wall']:.1f} | {r['tree_rss_mb']:.0f} "
              f"| {r['max_process_mb']:.0f} | {single:.0f} | {ratio:.2f} | {independent:.0f} "
              f"| {ratio_ind:.2f} | {load:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
