"""Images/s into the trainer's input: the in-process reader against tf.data service.

    python -m bench.service [--n 12000] [--face_px 150 600] [--epochs 3] [--batch 64]
                            [--workdir bench_out/service] [--compression NONE|AUTO]

Builds (once, reused) a synthetic sample of `--n` rows and its 224-px JPEG shards
(bench.stream's data step), then, in this process, consumes `--epochs` epochs of the
train split through the default strategy's distributed iterator (what the trainer's
loop pulls from) and prints images/s for:

1. the in-process reader: `records.distribute(..., training=True)`;
2. tf.data service, one local worker: `records.service.distribute` per epoch (one
   job per epoch, `distributed_epoch`), the servers started with
   `python -m records.service dispatcher|worker` as subprocesses;
3. the same with two local workers.

Every figure includes the per-epoch start (the service starts one job per epoch,
and its workers build the pipeline anew); "epoch start s" is the mean wait for an
epoch's first batch.
On a 2-core machine the trainer, the dispatcher and the workers share the cores, so
the service cannot win here: rows 2-3 measure its overhead. The last table is the
per-core decode rate (one tf.data thread: parse + JPEG decode, and with augmentation),
the number the sizing of worker hosts in docs/performance.md is computed from.
"""

from __future__ import annotations

import entry  # noqa: F401  first: sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads

import argparse
import os
import platform
import re
import subprocess
import sys
import time

from bench.stream import ensure_data

START_S = 120   # a server prints its address within this


def start_server(*args: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "records.service", *args, "--trusted_network"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    t0 = time.monotonic()
    line = proc.stdout.readline()    # the server's first line is where it listens
    m = re.search(r"listening on \S*?:(\d+)", line)
    if not m or time.monotonic() - t0 > START_S:
        proc.kill()
        sys.exit(f"records.service {args[0]} did not start: {line!r}")
    return proc, int(m[1])


def rate(epochs: int, make_iterator) -> tuple[float, float]:
    """(images/s over `epochs` epochs, mean seconds to an epoch's first batch);
    make_iterator(epoch) -> an iterable over one epoch."""
    import tensorflow as tf

    images, first, t0 = 0, 0.0, time.perf_counter()
    for epoch in range(epochs):
        start = time.perf_counter()
        for i, (_, labels) in enumerate(make_iterator(epoch)):
            if i == 0:
                first += time.perf_counter() - start
            images += int(tf.shape(labels["age"])[0])
    return images / (time.perf_counter() - t0), first / epochs


def per_core_rates(shards: str, batch: int, augment: bool) -> float:
    """Parse + decode (+ augment) images/s on one tf.data thread over the train split."""
    import tensorflow as tf

    from records import reader

    files, counts, decode, _ = reader.open_split(shards, "train")
    ds = tf.data.TFRecordDataset(files)
    ds = reader.decode_batches(ds, decode, batch, drop_remainder=False, augment=augment, seed=0)
    options = reader.pipeline_options(True, sharded=False)
    options.threading.private_threadpool_size = 1
    ds = ds.with_options(options)
    for _ in ds.take(2):          # warm-up (traces the functions)
        pass
    return rate(2, lambda e: ds)[0]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.service", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=12000, help="rows of the synthetic sample")
    p.add_argument("--face_px", type=int, nargs=2, default=(150, 600), help="source crop sizes")
    p.add_argument("--epochs", type=int, default=3, help="epochs consumed per configuration")
    p.add_argument("--batch", type=int, default=64, help="global batch size")
    p.add_argument("--workdir", default="bench_out/service")
    p.add_argument("--compression", default="NONE", choices=("AUTO", "NONE"),
                   help="how the service's workers compress batches for the wire")
    args = p.parse_args(argv)

    _, shards, how = ensure_data(args.workdir, args.n, tuple(args.face_px))
    import tensorflow as tf

    import records
    from records import service
    from records.manifest import read_manifest

    n_train = read_manifest(shards)["splits"]["train"]["count"]
    strategy = tf.distribute.get_strategy()
    per_epoch_batches = -(-n_train // args.batch)
    rows = []

    reader_ds = records.distribute(strategy, shards, "train", args.batch, training=True, seed=0)
    reader_it = iter(reader_ds)
    next(reader_it)                  # warm-up: tracing and the first shuffle fill

    def reader_epoch(_):
        for _ in range(per_epoch_batches):
            yield next(reader_it)
    rows.append(("in-process reader (records.distribute)", *rate(args.epochs, reader_epoch)))

    procs = []
    try:
        d, port = start_server("dispatcher", "--port", "0")
        procs.append(d)
        address = f"grpc://localhost:{port}"
        for workers in (1, 2):
            while len(procs) - 1 < workers:
                w, _ = start_server("worker", "--dispatcher", f"localhost:{port}", "--port", "0")
                procs.append(w)
            name = f"bench-{workers}w-{os.getpid()}"
            # warm-up epoch (traces the pipeline on the workers), not timed
            for _ in service.distribute(strategy, address, shards, "train", args.batch,
                                        name=name, epoch=0, seed=0, compression=args.compression):
                pass
            r = rate(args.epochs, lambda e: service.distribute(
                strategy, address, shards, "train", args.batch, name=name, epoch=e + 1, seed=0,
                compression=args.compression))
            rows.append((f"tf.data service, {workers} local worker{'s' if workers > 1 else ''}", *r))
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)

    core = per_core_rates(shards, args.batch, augment=False)
    core_aug = per_core_rates(shards, args.batch, augment=True)

    print(f"\n{platform.node()}: {os.cpu_count()} cores, TF {tf.__version__}; {shards} ({how}): "
          f"{n_train} train records, 224 px JPEG; batch {args.batch}, {args.epochs} epochs each, "
          f"service compression {args.compression}; load average {os.getloadavg()[0]:.1f}\n")
    print(f"| {'input to the trainer':<42} | {'images/s':>9} | {'vs reader':>9} | {'epoch start s':>13} |")
    print(f"|{'-' * 44}|{'-' * 11}|{'-' * 11}|{'-' * 15}|")
    for label, r, first in rows:
        print(f"| {label:<42} | {r:>9,.0f} | {r / rows[0][1]:>8.2f}x | {first:>13.2f} |")
    print(f"\n| {'one tf.data thread (per core)':<42} | {'images/s':>9} |")
    print(f"|{'-' * 44}|{'-' * 11}|")
    print(f"| {'parse + JPEG decode 224 px':<42} | {core:>9,.0f} |")
    print(f"| {'parse + decode + augment (flip, crop/scale)':<42} | {core_aug:>9,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
