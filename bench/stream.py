"""Benchmark of the streaming reader against the alternatives, on the same files.

    python -m bench.stream [--n 20000] [--face_px 150 600] [--workdir bench_out/stream] [--pil_n 1000]
    python -m bench.stream --scale_src BIG/imdb_crop [--scale_small 20000]

Builds (once, reused on the next run) a synthetic `wiki_crop` sample of `--n` rows
with `python -m ingest.sample` and its 224-px JPEG shards with `python -m ingest`,
then measures, in this one process and side by side:

1. reader: `records.make_dataset(train, batch 256, training=True)`, uint8, images/s
   over at least one epoch of the train split (after 3 warm-up batches);
2. bare: `TFRecordDataset -> batch -> parse_example -> decode` over the same files,
   no shuffle, no parallelism, default options: the upper bound of "just decoding";
3. `keras.utils.image_dataset_from_directory` over the original JPEG folder (resize
   to 224, batch 256), i.e. what users write without this project. `labels=None`:
   wiki_crop's folders 00..99 are not classes (the labels live in wiki.mat), so
   inferring labels from them would only invent 100 meaningless classes. The folder
   holds truncated files like a real download, so it needs `ignore_errors()` (per image).
4. the original recipe: every image `keras.utils.load_img(target_size=224)` ->
   `img_to_array` (float32) into a list, stacked into one numpy array; run on
   `--pil_n` images in a child process and extrapolated linearly (time and peak RSS
   above the import baseline) to 22578 (wiki) and 460723 (imdb) images.
Peak RSS of the reader is measured in child processes iterating 2k and 20k records
(training mode repeats the split) to show it is flat in N.

The second form is the scale line: the imdb-format sample in --scale_src (e.g. the
460,723-row one of `bench.ingest --scale_src`) and a --scale_small-row sample of the
same format are ingested once (64 px, identity split, reused on the next run), then
the reader streams each train split in alternating rounds of the same number of
batches, and child processes report the reader's peak RSS after iterating 20k, 100k
records and the whole large train split.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import platform
import subprocess
import sys
import time

BATCH = 256
SIZE = 224
WIKI_N, IMDB_N = 22578, 460723


def _peak_rss_mb() -> float:
    # VmHWM, not getrusage().ru_maxrss: Linux carries ru_maxrss over from the parent
    # across fork+exec, so a child would report the (TF-laden) parent's peak.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, capture_output=True, text=True)


# --------------------------------------------------------------------------- data

def ensure_data(workdir: str, n: int, face_px: tuple[int, int]) -> tuple[str, str, str]:
    """(wiki_crop folder, shard directory, how the shards were made)."""
    src, shards = os.path.join(workdir, "wiki_crop"), os.path.join(workdir, "shards")
    if not os.path.exists(os.path.join(src, "wiki.mat")):
        out = _run([sys.executable, "-m", "ingest.sample", "--out", src, "--n", str(n),
                    "--face_px", *map(str, face_px)])
        if out.returncode:
            sys.exit(f"ingest.sample failed:\n{out.stderr[-2000:]}")
    if os.path.exists(os.path.join(shards, "manifest.json")):
        return src, shards, "existing"
    out = _run([sys.executable, "-m", "ingest", "--src", src, "--out", shards,
                "--image_size", str(SIZE)])
    if out.returncode:
        sys.exit(f"ingest failed:\n{out.stderr[-3000:]}")
    return src, shards, "python -m ingest"


# --------------------------------------------------------------------------- measurements

def time_batches(ds, max_batches: int | None, warmup: int) -> tuple[float, int]:
    """images/s over `max_batches` (None: to the end) after `warmup` batches."""
    it = iter(ds)
    for _ in range(warmup):
        next(it)
    images, t0 = 0, time.perf_counter()
    for i, batch in enumerate(it):
        x = batch[0] if isinstance(batch, tuple) else batch
        images += int(x.shape[0])
        if max_batches is not None and i + 1 >= max_batches:
            break
    return images / (time.perf_counter() - t0), images


def source_stats(src: str) -> tuple[int, float]:
    """(number of .jpg files, mean width*height) of the source folder: decode cost of
    pipeline 3 depends on it (real wiki crops are mostly 150-600 px a side)."""
    from PIL import Image

    paths = glob.glob(os.path.join(src, "*", "*.jpg"))
    areas = []
    for p in paths:
        try:
            with Image.open(p) as im:   # reads the header only
                areas.append(im.width * im.height)
        except OSError:
            pass
    return len(paths), sum(areas) / max(len(areas), 1)


def bare_dataset(files):
    import tensorflow as tf

    from records import schema

    spec = {k: schema.feature_spec()[k] for k in (schema.IMAGE_ENCODED, schema.AGE)}

    def decode(serialized):
        ex = tf.io.parse_example(serialized, spec)
        images = tf.map_fn(lambda s: tf.io.decode_jpeg(s, channels=3), ex[schema.IMAGE_ENCODED],
                           fn_output_signature=tf.TensorSpec([SIZE, SIZE, 3], tf.uint8))
        return images, ex[schema.AGE]

    return tf.data.TFRecordDataset(files).batch(BATCH).map(decode)


def child_reader_rss(shards: str, records_n: int) -> None:
    """Peak RSS of a process whose reader has iterated `records_n` training records."""
    import records
    import records.reader  # noqa: F401  (TensorFlow loaded: the baseline includes it)

    base = _peak_rss_mb()
    ds = records.make_dataset(shards, "train", BATCH, training=True, seed=0)
    seen = 0
    for x, _ in ds.take(math.ceil(records_n / BATCH)):
        seen += int(x.shape[0])
    print(json.dumps({"records": seen, "peak_rss_mb": _peak_rss_mb(), "base_rss_mb": base}))


def child_pil(src: str, n: int) -> None:
    import numpy as np
    from keras.utils import img_to_array, load_img

    paths = sorted(glob.glob(os.path.join(src, "*", "*.jpg")))[:n]
    base = _peak_rss_mb()
    t0 = time.perf_counter()
    pixels, failed = [], 0
    for p in paths:
        try:  # the original recipe: load_img(target_size) -> img_to_array (float32)
            pixels.append(img_to_array(load_img(p, target_size=(SIZE, SIZE))))
        except Exception:  # the recipe crashed here; we count the bad files instead
            failed += 1
    frame = np.array(pixels)            # one float32 array [N, 224, 224, 3]
    seconds = time.perf_counter() - t0
    print(json.dumps({"images": len(paths), "failed": failed, "seconds": seconds,
                      "array_gb": frame.nbytes / 1e9, "peak_rss_mb": _peak_rss_mb(),
                      "base_rss_mb": base}))


def child_json(args: list[str]) -> dict:
    out = _run([sys.executable, "-m", "bench.stream", *args])
    if out.returncode:
        sys.exit(f"child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- scale

SCALE_SIZE = 64


def ensure_scale_shards(src: str, out: str) -> str:
    """`src` ingested at SCALE_SIZE px with the identity split (once; reused)."""
    if not os.path.exists(os.path.join(out, "manifest.json")):
        r = _run([sys.executable, "-m", "ingest", "--src", src, "--out", out, "--image_size",
                  str(SCALE_SIZE), "--split_by", "identity", "--workers", "2"])
        if r.returncode:
            sys.exit(f"ingest of {src} failed:\n{r.stderr[-3000:]}")
    return out


def scale_table(big_src: str, small_n: int, workdir: str, rounds: int) -> None:
    from ingest import sample

    small_src = os.path.join(workdir, f"imdb{small_n}-px48-96", "imdb_crop")
    if not os.path.exists(os.path.join(small_src, "imdb.mat")):
        sample.generate(small_src, small_n, face_px=(48, 96), dataset="imdb")
    small = ensure_scale_shards(small_src, os.path.join(workdir, f"scale-shards-{small_n}"))
    big = ensure_scale_shards(big_src, os.path.join(workdir, "scale-shards-big"))
    import tensorflow as tf

    import records

    counts = {d: records.read_manifest(d)["splits"]["train"]["count"] for d in (small, big)}
    # The same number of batches from each: one epoch of the small split.
    batches = max(math.ceil(counts[small] / BATCH), 10)
    rates = {small: [], big: []}
    for _ in range(rounds):
        for d in (small, big):
            ds = records.make_dataset(d, "train", BATCH, training=True, seed=0)
            rates[d].append(time_batches(ds, batches, warmup=3)[0])
    med = {d: sorted(v)[len(v) // 2] for d, v in rates.items()}
    points = [20480, 102400, counts[big]]
    rss = [child_json(["--workdir", workdir, "--_child", "reader_rss_at", f"{big}:{n}"]) for n in points]
    print(f"\nTF {tf.__version__}, {os.cpu_count()} cores, load avg {os.getloadavg()[0]:.1f}; "
          f"{SCALE_SIZE}-px JPEG shards, identity split; batch {BATCH}, training mode; "
          f"median of {rounds} alternating rounds of {batches} batches\n")
    print("| train split | shard files | images/s | vs small | rounds |")
    print("|---:|---:|---:|---:|---|")
    for d in (small, big):
        files = len(records.read_manifest(d)["splits"]["train"]["shards"])
        print(f"| {counts[d]:,} | {files} | {med[d]:,.0f} | {med[d] / med[small]:.2f} "
              f"| {min(rates[d]):,.0f}–{max(rates[d]):,.0f} |")
    print()
    print("| large split: records iterated | peak RSS (MB) | RSS after imports (MB) |")
    print("|---:|---:|---:|")
    for r in rss:
        print(f"| {r['records']:,} | {r['peak_rss_mb']:,.0f} | {r['base_rss_mb']:,.0f} |")


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20000, help="rows of the synthetic wiki_crop sample")
    p.add_argument("--workdir", default="bench_out/stream",
                   help="sample + shards live here (reused as they are: delete it to change --n/--face_px)")
    p.add_argument("--face_px", type=int, nargs=2, default=(150, 600), metavar=("MIN", "MAX"),
                   help="side range of the sample's source face crops; the real wiki crops are mostly "
                        "150-600 px, and their decode cost is what image_dataset_from_directory pays")
    p.add_argument("--pil_n", type=int, default=1000,
                   help="images the original-recipe child loads (then extrapolated)")
    p.add_argument("--rss_n", default="2048,20480,61440,122880",
                   help="records read by the reader-RSS children (training mode repeats the split)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of pipelines 1-3 (median)")
    p.add_argument("--scale_src", help="an imdb-format sample folder: print the scale line instead")
    p.add_argument("--scale_small", type=int, default=20000,
                   help="rows of the small imdb sample the scale line compares with")
    p.add_argument("--_child", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    src, shards = os.path.join(args.workdir, "wiki_crop"), os.path.join(args.workdir, "shards")
    if args._child:
        kind, n = args._child
        if kind == "reader_rss_at":            # SHARDS:N, for the scale line
            at, _, n = n.rpartition(":")
            child_reader_rss(at, int(n))
        elif kind == "reader_rss":
            child_reader_rss(shards, int(n))
        else:
            child_pil(src, int(n))
        return 0
    if args.scale_src:
        scale_table(args.scale_src, args.scale_small, args.workdir, args.rounds)
        return 0

    src, shards, origin = ensure_data(args.workdir, args.n, tuple(args.face_px))
    import keras
    import tensorflow as tf

    import records

    manifest = records.read_manifest(shards)
    train = manifest["splits"]["train"]
    files = [os.path.join(shards, s["file"]) for s in train["shards"]]
    n_train = train["count"]
    epoch_batches = max(math.ceil(n_train / BATCH), 10)
    n_jpeg, src_px = source_stats(src)

    # The 2 cores are shared (other processes come and go), so the three streaming
    # pipelines run in alternating rounds and each reports its median round.
    # 1. the reader (training mode: shuffle, infinite repeat, drop_remainder), one epoch+
    def reader():
        ds = records.make_dataset(shards, "train", BATCH, training=True, seed=0)
        return time_batches(ds, epoch_batches, warmup=3)

    # 2. the bare upper bound, same files, one pass
    def bare():
        return time_batches(bare_dataset(files), None, warmup=1)

    # 3. image_dataset_from_directory over the original folder. batch_size=None, then
    #    ignore_errors() per image, then batch: ignore_errors on batches would drop a
    #    whole batch of 256 for each truncated file.
    def idfd():
        ds = keras.utils.image_dataset_from_directory(
            src, labels=None, image_size=(SIZE, SIZE), batch_size=None, verbose=False)
        return time_batches(ds.ignore_errors().batch(BATCH), None, warmup=1)

    runs = {"reader": [], "bare": [], "idfd": []}
    for _ in range(args.rounds):
        for name, fn in (("reader", reader), ("bare", bare), ("idfd", idfd)):
            runs[name].append(fn())
    med = {k: sorted(v)[len(v) // 2] for k, v in runs.items()}
    (reader_rate, reader_n), (bare_rate, bare_n), (idfd_rate, idfd_n) = med["reader"], med["bare"], med["idfd"]
    spread = {k: f"{min(v)[0]:,.0f}–{max(v)[0]:,.0f}" for k, v in runs.items()}
    # 4. the original recipe (child process: its own peak RSS)
    pil = child_json(["--workdir", args.workdir, "--_child", "pil", str(args.pil_n)])
    loaded = pil["images"] - pil["failed"]
    pil_rate = loaded / pil["seconds"]
    per_image_mb = (pil["peak_rss_mb"] - pil["base_rss_mb"]) / max(loaded, 1)
    # reader RSS over N
    rss = [child_json(["--workdir", args.workdir, "--_child", "reader_rss", n])
           for n in args.rss_n.split(",")]

    def fmt_rate(r):
        return f"{r:,.0f}"

    rows = [
        ("1. records.make_dataset (training, batch 256, uint8)", fmt_rate(reader_rate),
         f"{reader_rate / bare_rate:.2f}",
         f"{reader_n} images/round from {len(files)} shard files; rounds {spread['reader']}"),
        ("2. bare TFRecordDataset→batch→parse_example→decode", fmt_rate(bare_rate), "1.00",
         f"{bare_n} images, same files, one pass; rounds {spread['bare']}"),
        ("3. keras image_dataset_from_directory (224, batch 256)", fmt_rate(idfd_rate),
         f"{idfd_rate / bare_rate:.2f}",
         f"{idfd_n} of {n_jpeg} source .jpg (mean {src_px:,.0f} px each), float32, "
         f"labels=None; rounds {spread['idfd']}"),
        ("4. original recipe: load_img→float32 array", fmt_rate(pil_rate),
         f"{pil_rate / bare_rate:.2f}",
         f"{loaded} images in {pil['seconds']:.1f}s; {pil['array_gb']:.2f} GB array"),
    ]
    print()
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"TF {tf.__version__}, Keras {keras.__version__}; shards: {origin}; "
          f"train split {n_train} records, {len(files)} files")
    print()
    print("| pipeline | images/s | × bare | notes |")
    print("|---|---:|---:|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()
    print(f"reader / bare = {reader_rate / bare_rate:.2f} (target ≥ 0.9); "
          f"reader / image_dataset_from_directory = {reader_rate / idfd_rate:.1f} (target ≥ 2)")
    print()
    print("| original recipe, extrapolated | time | peak RSS above imports |")
    print("|---|---:|---:|")
    for name, n in (("measured", loaded), ("wiki 22578", WIKI_N), ("imdb 460723", IMDB_N)):
        print(f"| {name} ({n} images) | {n / pil_rate / 60:,.1f} min | {per_image_mb * n / 1024:,.1f} GB |")
    print()
    print("| reader, records iterated | peak RSS (MB) | RSS after imports (MB) |")
    print("|---:|---:|---:|")
    for r in rss:
        print(f"| {r['records']:,} | {r['peak_rss_mb']:,.0f} | {r['base_rss_mb']:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
