"""Ingest throughput and memory on synthetic samples (not a test: numbers vary by machine).

    python -m bench.ingest [--sizes 2000,20000] [--utkface 2000] [--baseline /tmp/base]
                           [--rounds 3] [--image_size 224] [--face_px 150 600] [--workers 0]
    python -m bench.ingest --scale_src BIG/imdb_crop [--scale_small 20000] [--out bench_out/ingest]
    python -m bench.ingest --reframe_src UTKFACE_DIR [--out bench_out/ingest]

The third form is the re-framing table: a folder of real UTKFace crops (synthetic faces
have no face a detector finds) ingested at --image_size 64 with 2 workers and each
--reframe (none and each detector, faces.framing.REFRAME): images/s, wall time, records kept and photos without a
face found, the main process's peak RSS and each worker's peak private memory (USS).

The second form is the scale table: the imdb-format sample in --scale_src (make
it once with `python -m ingest.sample --dataset imdb --n 460723 --face_px 48 96
--out BIG/imdb_crop`; it takes a while, keep it outside the repo) against a
--scale_small-row sample of the same format, both ingested at --image_size 64
with the identity split (by celeb_id) and 2 workers.  Per row: images/s and its
ratio to the small row's, wall time, the main process's peak RSS (VmHWM),
the decode workers' peak private memory (USS: pages no other process shares),
and the sum; the main process against `scipy.io.loadmat` alone on the same
file; the metadata step (.mat -> table -> cleaning -> split) on its own; and
what a kill -9 halfway through costs the rerun (images decoded again).

The first form: for each wiki sample size (ingest.sample, face crops of --face_px) and a UTKFace
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
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time

from ingest import sample, sample_sources

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # this checkout


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


def _status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
    except (OSError, StopIteration):
        return 0


def _uss_kb(pid: int) -> int:
    """Private (unshared) memory of `pid`: what the process really costs."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return sum(int(line.split()[1]) for line in f
                       if line.startswith(("Private_Clean:", "Private_Dirty:")))
    except OSError:
        return 0


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def run_measured(args: list[str], kill_at_fraction: float | None = None) -> dict:
    """`python -m ingest ARGS`, sampling every 0.1 s the main process's VmHWM and
    each child's USS.  kill_at_fraction: SIGKILL the run once its progress line
    reports that fraction of the images done (returns what was done by then)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "ingest", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    main_peak, worker_peak, done_at_kill = 0, {}, None
    while proc.poll() is None:
        main_peak = max(main_peak, _status_kb(proc.pid, "VmHWM"))
        for child in _children(proc.pid):
            worker_peak[child] = max(worker_peak.get(child, 0), _uss_kb(child))
        if kill_at_fraction is not None:
            progress = re.findall(r"(\d+)/(\d+) images", "".join(lines[-3:]))
            if progress and int(progress[-1][0]) >= kill_at_fraction * int(progress[-1][1]):
                proc.kill()
                proc.wait()
                done_at_kill = int(progress[-1][0])
                break
        time.sleep(0.1)
    wall = time.monotonic() - start
    stdout = proc.stdout.read()
    reader.join()
    err = "".join(lines)
    if kill_at_fraction is None and proc.returncode != 0:
        raise SystemExit(f"ingest {' '.join(args)} failed:\n{err[-2000:]}")
    rate = re.search(r"(\d+) images/s; wrote", stdout)
    return {"rate": float(rate.group(1)) if rate else None, "wall": wall, "stdout": stdout,
            "main_mb": main_peak / 1024, "workers_mb": sorted(v / 1024 for v in worker_peak.values()),
            "done_at_kill": done_at_kill}


def _python_peak_mb(code: str) -> tuple[float, float]:
    """(seconds, peak RSS MB) of `python -c code` (which prints its own seconds). The peak
    is VmHWM, which starts at exec: ru_maxrss would carry over this process's own peak."""
    out = subprocess.run([sys.executable, "-c", code + "\nprint(next(line.split()[1] for line in "
                          "open('/proc/self/status') if line.startswith('VmHWM:')))"],
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), int(out[1]) / 1024


def loadmat_alone(mat: str) -> tuple[float, float]:
    return _python_peak_mb(f"import time, scipy.io\nt = time.perf_counter()\n"
                           f"scipy.io.loadmat({mat!r})\nprint(time.perf_counter() - t)")


def metadata_step(mat: str) -> tuple[float, float]:
    """The metadata step alone: .mat -> table -> cleaning -> identity split."""
    return _python_peak_mb(
        f"import time\nfrom ingest import pipeline, split\nt = time.perf_counter()\n"
        f"_, _, kept, _ = pipeline.load_and_clean(pipeline.Config(src={os.path.dirname(mat)!r}))\n"
        f"split.assign(kept, by='identity')\nprint(time.perf_counter() - t)")


def scale_table(big_src: str, small_n: int, out: str) -> None:
    small_src = os.path.join(out, f"imdb{small_n}-px48-96", "imdb_crop")
    if not os.path.exists(os.path.join(small_src, "imdb.mat")):
        sample.generate(small_src, small_n, face_px=(48, 96), dataset="imdb")
    rows, mats = [], {}
    for src in (small_src, big_src):
        mat = os.path.join(src, "imdb.mat")
        target = os.path.join(out, f"scale-{os.path.basename(os.path.dirname(os.path.abspath(src)))}")
        args = ["--src", src, "--out", target, "--image_size", "64", "--split_by", "identity",
                "--workers", "2"]
        r = run_measured(args)
        entries = int(re.search(r"(\d+) entries", r["stdout"]).group(1))
        written = sum(int(n) for n in re.findall(r"(\d+) records in", r["stdout"]))
        rows.append((entries, written, r, loadmat_alone(mat), metadata_step(mat), os.getloadavg()[0]))
        mats[src] = args
        print(f"done {src}", file=sys.stderr)
    small_rate = rows[0][2]["rate"]
    print("\n2 workers, --image_size 64, --split_by identity (celeb_id), jpeg, imdb format, "
          f"{os.cpu_count()} cores\n")
    print("| entries | written | images/s | vs small | wall s | main peak RSS MB | loadmat alone MB "
          "| main / loadmat | worker USS MB (each) | main + workers MB | metadata step s (peak MB) | load avg |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for entries, written, r, (_, load_mb), (meta_s, meta_mb), load in rows:
        print(f"| {entries} | {written} | {r['rate']:.0f} | {r['rate'] / small_rate:.2f} "
              f"| {r['wall']:.1f} | {r['main_mb']:.0f} | {load_mb:.0f} | {r['main_mb'] / load_mb:.2f} "
              f"| {', '.join(f'{w:.0f}' for w in r['workers_mb'])} "
              f"| {r['main_mb'] + sum(r['workers_mb']):.0f} | {meta_s:.1f} ({meta_mb:.0f}) | {load:.1f} |")
    # Resume: kill -9 halfway through the big run (a fresh target), then rerun it.
    target = os.path.join(out, "scale-resume")
    shutil.rmtree(target, ignore_errors=True)
    shutil.rmtree(os.path.join(out, ".scale-resume.staging"), ignore_errors=True)
    args = mats[big_src][:3] + [target] + mats[big_src][4:]
    killed = run_measured(args, kill_at_fraction=0.5)
    rerun = run_measured(args)
    m = re.search(r"kept (\d+) completed shards \(([^)]*)\); decoding the remaining (\d+) of (\d+)",
                  rerun["stdout"])
    total, remaining = int(m.group(4)), int(m.group(3))
    redone = remaining - (total - killed["done_at_kill"])
    manifest = json.load(open(os.path.join(target, "manifest.json")))
    per_shard = {s: e["count"] / len(e["shards"]) for s, e in manifest["splits"].items()}
    bound = sum(per_shard.values())
    print(f"\nkill -9 at {killed['done_at_kill']} of {total} images ({killed['wall']:.0f} s in), "
          f"rerun: kept {m.group(1)} shards ({m.group(2)}), decoded {remaining} images "
          f"({rerun['wall']:.0f} s); decoded again: {redone} images, at most one partial shard "
          f"per split allows {bound:.0f} (records per shard: "
          f"{', '.join(f'{s} {n:.0f}' for s, n in per_shard.items())}); load avg {os.getloadavg()[0]:.1f}")


def reframe_table(src: str, out: str) -> None:
    from faces import framing

    rows = []
    for reframe in framing.REFRAME:
        target = os.path.join(out, f"reframe-{reframe}")
        shutil.rmtree(target, ignore_errors=True)
        r = run_measured(["--src", src, "--out", target, "--image_size", "64", "--workers", "2",
                          "--reframe", reframe])
        manifest = json.load(open(os.path.join(target, "manifest.json")))
        written = sum(e["count"] for e in manifest["splits"].values())
        rows.append((reframe, manifest["kept"], written, manifest["skipped"].get("no_face_found", 0), r,
                     os.getloadavg()[0]))
        print(f"done --reframe {reframe}", file=sys.stderr)
    print(f"\n{src}: 2 workers, --image_size 64, jpeg, {os.cpu_count()} cores\n")
    print("| --reframe | rows kept | records | no_face_found | images/s | wall s | main peak RSS MB "
          "| worker peak USS MB (each) | load avg |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for reframe, kept, written, faceless, r, load in rows:
        print(f"| {reframe} | {kept} | {written} | {faceless} | {r['rate']:.0f} | {r['wall']:.1f} "
              f"| {r['main_mb']:.0f} | {', '.join(f'{w:.0f}' for w in r['workers_mb'])} | {load:.1f} |")


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
        peak = max(peak, _tree_rss_kb(proc.pid))
        # VmHWM starts at exec (wait4's ru_maxrss would carry the forking bench's RSS over)
        largest = max([largest] + [_status_kb(p, "VmHWM") for p in [proc.pid, *_children(proc.pid)]])
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
    parser.add_argument("--scale_src", help="an imdb-format sample folder: print the scale table instead")
    parser.add_argument("--reframe_src", help="a folder of real UTKFace crops: print the re-framing table instead")
    parser.add_argument("--scale_small", type=int, default=20000,
                        help="rows of the small imdb sample the scale table compares with")
    args = parser.parse_args(argv)
    if args.reframe_src:
        reframe_table(args.reframe_src, args.out)
        return 0
    if args.scale_src:
        scale_table(args.scale_src, args.scale_small, args.out)
        return 0
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
