"""Benchmark of the feature cache: seconds per epoch with and without it.

    python -m bench.cache [--n 1200] [--val_fraction 0.5] [--test_fraction 0.02] [--rounds 3]

An "epoch" is the original recipe's schedule: ONE training step of a 256-image
batch, then a full pass over the validation split. Both paths run the trainer's
own code (`trainer.loop.Loop` under `tf.distribute.get_strategy()`, data from
`records.distribute` / `records.make_dataset`), in this one process, on the same
shards:

- without cache: uint8 images -> the whole age model (frozen trunk + head);
- with cache: float16 features (VGG: pool5; `trainer.features`) -> `model.head(net)`.

Two models, both with random weights (`weights=None`): speed does not depend on
weight values, only on shapes. (a) tiny (32 px input) reads the 224-px shards
resized on the fly to 32 px, as the trainer would with those shards, so its
"without cache" epoch also pays the 224-px JPEG decode + resize, which the
cache pays once; (b) full-size VGG-Face at 224 px on a reduced image count.

Data (built once under --workdir, reused on the next run): `python -m
ingest.sample --n N` then `python -m ingest --image_size 224` with
--val_fraction/--test_fraction, both as subprocesses before TensorFlow is
imported (ingest's worker pool must not fork from a TF process).

Timing: each path runs one untimed warm-up epoch (tf.function tracing, the
partial last validation batch), then --rounds timed epochs interleaved
without/with (A B A B ...) so machine noise hits both; the median is reported.
The cache build is timed with `features.build` (always a fresh build, all
splits), then `features.ensure` must find it complete.
"""

from __future__ import annotations

import entry  # first: sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

BATCH = 256          # the original recipe's training batch
SHARD_SIZE = 224


def _run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{cmd[2]} failed:\n{out.stderr[-3000:]}")


def ensure_data(workdir: str, n: int, val_fraction: float, test_fraction: float) -> str:
    """The 224-px shard directory for these counts (made once, then reused)."""
    tag = f"n{n}-val{val_fraction}-test{test_fraction}"
    src, shards = os.path.join(workdir, f"wiki_crop-n{n}"), os.path.join(workdir, f"shards-{tag}")
    if not os.path.exists(os.path.join(src, "wiki.mat")):
        _run([sys.executable, "-m", "ingest.sample", "--out", src, "--n", str(n)])
    if not os.path.exists(os.path.join(shards, "manifest.json")):
        _run([sys.executable, "-m", "ingest", "--src", src, "--out", shards,
              "--image_size", str(SHARD_SIZE), "--val_fraction", str(val_fraction),
              "--test_fraction", str(test_fraction)])
    return shards


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def bench_variant(variant: str, shards: str, args) -> dict:
    """Cache build cost and per-epoch seconds (median) without and with the cache."""
    import keras
    import tensorflow as tf

    import model as age_model_lib
    import records
    from trainer import features, loop

    strategy = tf.distribute.get_strategy()
    loop.set_seeds(args.seed)
    keras.mixed_precision.set_global_policy("float32")
    with strategy.scope():
        net = age_model_lib.build_age_model(None, variant=variant)   # random weights
        head = age_model_lib.head(net)                                # shares fc6.. with net
    size = age_model_lib.input_size(net)

    # One-time cost: a fresh build over every split (features.ensure would reuse an old one).
    key = features.cache_key(shards, None, variant, size, args.seed, age_model_lib.feature_layer(net).compute_dtype)
    t0 = time.perf_counter()
    features.build(net, shards, key, batch_size=args.cache_batch, log=lambda m: None)
    build_s = time.perf_counter() - t0
    cache = features.ensure(net, shards, None, variant, args.seed, allow_build=False, log=lambda m: None)
    n_cached = sum(s["count"] for s in records.read_manifest(cache)["splits"].values())

    n_val = records.read_manifest(shards)["splits"]["val"]["count"]

    def path(data_dir, input_side, train_net):
        """A (train step, validation pass) timer over `data_dir`, as trainer.train wires it."""
        trainer = loop.Loop(strategy, train_net, keras.optimizers.Adam(1e-3),
                            global_batch_size=BATCH, with_gender=False)
        iterator = iter(records.distribute(strategy, data_dir, "train", BATCH, training=True,
                                           seed=args.seed, resize_to=input_side))
        val = records.make_dataset(data_dir, "val", args.eval_batch, training=False, resize_to=input_side)

        def epoch():
            t0 = time.perf_counter()
            sums = trainer.train(iterator, 1)
            t1 = time.perf_counter()
            val_sums = trainer.evaluate(val)
            t2 = time.perf_counter()
            assert sums["count"] == BATCH and val_sums["count"] == n_val, (sums, val_sums)
            return t1 - t0, t2 - t1
        return epoch

    paths = {"without cache": path(shards, size, net), "with cache": path(cache, None, head)}
    for epoch in paths.values():
        epoch()                                  # warm-up: tracing, first reads
    times = {name: [] for name in paths}
    rounds = args.tiny_rounds if variant == "tiny" else args.rounds
    for _ in range(rounds):                      # A B A B ...: noise hits both
        for name, epoch in paths.items():
            times[name].append(epoch())
    result = {"variant": variant, "size": size, "rounds": rounds, "build_s": build_s, "n_cached": n_cached,
              "n_val": n_val, "load": loadavg()}
    for name, ts in times.items():
        result[name] = {"train": statistics.median(t for t, _ in ts),
                        "val": statistics.median(v for _, v in ts),
                        "epoch": statistics.median(t + v for t, v in ts),
                        "epochs": [t + v for t, v in ts]}
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1200, help="rows of the synthetic wiki_crop sample (~53%% kept)")
    p.add_argument("--val_fraction", type=float, default=0.5, help="ingest: fraction of non-test rows in val")
    p.add_argument("--test_fraction", type=float, default=0.02,
                   help="ingest: fraction of kept rows in test (the cache build covers test too)")
    p.add_argument("--variants", default="tiny,full",
                   help="comma-separated variants (model.families), e.g. tiny, full, mobilenet")
    p.add_argument("--rounds", type=int, default=3,
                   help="timed epochs per path (median), interleaved, for the full model")
    p.add_argument("--tiny_rounds", type=int, default=15, help="the same for tiny (epochs of ~0.1 s)")
    p.add_argument("--eval_batch", type=int, default=BATCH, help="validation batch (trainer default: 256)")
    p.add_argument("--cache_batch", type=int, default=64, help="trunk batch of the cache build (the trainer's is "
                   "trainer.flags.FEATURES_BATCH_SIZE)")
    p.add_argument("--extrapolate_val", type=int, default=6673,
                   help="also print the epoch at this validation count (the original wiki val split), "
                        "extrapolated linearly from the measured per-image validation cost")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default="bench_out/cache", help="sample + shards live here (reused)")
    args = p.parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    shards = ensure_data(args.workdir, args.n, args.val_fraction, args.test_fraction)  # before TF

    import keras
    import tensorflow as tf

    import records

    splits = records.read_manifest(shards)["splits"]
    load_start = loadavg()
    results = [bench_variant(v, shards, args) for v in args.variants.split(",")]

    print()
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"TF {tf.__version__}, Keras {keras.__version__}; load average (1/5/15 min) "
          f"{load_start} at start, {loadavg()} at end")
    print(f"Shards: {shards} ({SHARD_SIZE}-px JPEG), " +
          ", ".join(f"{k} {v['count']}" for k, v in splits.items()) +
          f"; epoch = 1 training step of {BATCH} + validation pass over {splits['val']['count']} "
          f"(batch {args.eval_batch}); per path the median of interleaved epochs (tiny {args.tiny_rounds}, "
          f"full {args.rounds}) after 1 warm-up; "
          f"random weights (speed does not depend on weight values)")
    print()
    print("| variant | path | train step s | validation pass s | epoch s | speedup | "
          "cache build s | cache build images/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        name = f"{r['variant']} ({r['size']} px)"
        a, b = r["without cache"], r["with cache"]
        print(f"| {name} | without cache | {a['train']:.3f} | {a['val']:.3f} | {a['epoch']:.3f} | 1.0× | | |")
        print(f"| {name} | with cache | {b['train']:.3f} | {b['val']:.3f} | {b['epoch']:.3f} | "
              f"{a['epoch'] / b['epoch']:.1f}× | {r['build_s']:.1f} | {r['n_cached'] / r['build_s']:.1f} |")
    print()
    for r in results:
        a, b = r["without cache"], r["with cache"]
        print(f"{r['variant']} ({r['rounds']} rounds): epochs without {', '.join(f'{t:.3f}' for t in a['epochs'])} s; "
              f"with {', '.join(f'{t:.3f}' for t in b['epochs'])} s; cache of {r['n_cached']} records "
              f"(all splits) pays for itself after {r['build_s'] / (a['epoch'] - b['epoch']):.1f} epochs; "
              f"load after: {r['load']}")
    print()
    v = args.extrapolate_val
    for r in results:
        # Not measured: the training step as measured plus the validation pass scaled to v images.
        a, b = (r[k]["train"] + r[k]["val"] * v / r["n_val"] for k in ("without cache", "with cache"))
        print(f"{r['variant']}, extrapolated to a validation split of {v} (linear in the measured "
              f"per-image validation cost): without {a:.1f} s, with {b:.1f} s per epoch, {a / b:.1f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
