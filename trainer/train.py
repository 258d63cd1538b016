"""`python -m trainer`: shards -> streaming reader -> age model -> best.keras.

The order of `main` is deliberate: check every flag and the shards' manifest
before TensorFlow builds anything (bad input costs one line, not a traceback
after minutes of model building), create the strategy before any other op
(MultiWorkerMirroredStrategy requires it), then build, restore and train.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import keras
import tensorflow as tf
from absl import app, flags, logging

import model as age_model_lib
import records
from trainer import distribution, features, loop
from trainer.flags import FLAGS, MIXED_PRECISION_POLICIES, FIXED_ON_RESUME
from trainer.run_dir import RunDir, RunDirError


def resolved_flag_lines() -> list[str]:
    """`--name=value` for every trainer flag, in a form --flagfile reads back."""
    from trainer import flags as flags_module
    return [f.serialize() for f in sorted(FLAGS.get_flags_for_module(flags_module.__name__),
                                          key=lambda f: f.name)
            if f.serialize()]


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate)
    raise ValueError(f"unknown optimizer {name!r}")


def check_data(directory: str, validation_split: str) -> dict:
    manifest = records.read_manifest(directory)
    for split in ("train", validation_split):
        records.manifest.split_shards(directory, manifest, split)
    return manifest


def check_run_dir(run: RunDir, resume: bool) -> bool:
    """True when the run directory holds a checkpoint to continue from."""
    has_checkpoint = tf.train.latest_checkpoint(run.checkpoints) is not None
    if has_checkpoint and not resume:
        raise RunDirError(f"{run.path} already holds a run; pass --resume to continue it or "
                          f"choose a new --model_dir")
    previous = run.read_flags()
    if has_checkpoint and previous:
        for name in FIXED_ON_RESUME:
            now = str(FLAGS[name].value).lower()
            before = previous.get(name, now).lower()
            if before != now:
                raise RunDirError(f"--{name}={FLAGS[name].value} but the run in {run.path} was trained "
                                  f"with --{name}={previous[name]}; use the same value or a new --model_dir")
    return has_checkpoint


class EpochReporter:
    """A keras Progbar on a terminal, one line per epoch otherwise (logs, CI)."""

    def __init__(self, steps: int, epochs: int):
        self.steps, self.epochs = steps, epochs
        self.tty = sys.stdout.isatty()
        self.bar = None

    def start(self, epoch: int) -> None:
        if self.tty:
            print(f"Epoch {epoch + 1}/{self.epochs}")
            self.bar = keras.utils.Progbar(self.steps, stateful_metrics=["loss", "mae"])

    def update(self, done: int, running: dict) -> None:
        if self.bar is not None:
            self.bar.update(done, [("loss", running["loss"]), ("mae", running["mae"])])

    def end(self, row: dict) -> None:
        parts = [f"epoch {row['epoch']}/{self.epochs}"] + [
            f"{k} {row[k]:.4g}" for k in ("loss", "mae", "val_loss", "val_mae", "val_cs5") if k in row]
        parts.append(f"{row['epoch_seconds']:.1f}s {row['images_per_second']:.0f} img/s")
        print(" - ".join(parts), flush=True)


def save_best(net: keras.Model, path: str) -> None:
    """Write best.keras under a temporary name first: a kill mid-save keeps the old one."""
    tmp = os.path.join(os.path.dirname(path), ".best.partial.keras")
    net.save(tmp)
    os.replace(tmp, path)


def dry_run(f=FLAGS) -> None:
    """Everything `train` checks before building, then the plan, and nothing else."""
    manifest = check_data(f.records, f.validation_split)
    check_run_dir(RunDir(f.model_dir), f.resume)
    train_count = manifest["splits"]["train"]["count"]
    steps = f.steps_per_epoch or max(1, train_count // f.batch_size)
    print("\n".join(resolved_flag_lines()))
    print(f"plan: {f.epochs} epochs x {steps} steps x {f.batch_size} images from {train_count} "
          f"training records ({manifest['image_size']} px shards), validating on "
          f"{manifest['splits'][f.validation_split]['count']} {f.validation_split} records", flush=True)


def train(f=FLAGS) -> str | None:
    """Run the whole job described by the flags; returns the run directory on the
    chief (the process that evaluates afterwards), None on other workers."""
    manifest = check_data(f.records, f.validation_split)
    distribution.split_cpu(f.logical_cpus)
    strategy = distribution.make_strategy(f.strategy)
    distribution.log_strategy(strategy)
    chief = distribution.is_chief(strategy)

    run = RunDir(f.model_dir)
    resuming = check_run_dir(run, f.resume)
    if chief:
        os.makedirs(run.path, exist_ok=True)
        run.write_flags(resolved_flag_lines())

    loop.set_seeds(f.seed)
    keras.mixed_precision.set_global_policy(MIXED_PRECISION_POLICIES[f.mixed_precision] or "float32")
    with_gender = f.task == "age_gender"
    weights = None if f.weights.lower() == "none" else f.weights
    global_batch = f.batch_size

    with strategy.scope():
        net = age_model_lib.build_age_model(weights, gender=with_gender, variant=f.variant,
                                            dropout=f.dropout)
        optimizer = make_optimizer(f.optimizer, f.learning_rate)
        if f.mixed_precision == "fp16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(net.trainable_variables)  # slots must exist before a restore
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        best_var = tf.Variable(float("inf"), dtype=tf.float64, trainable=False, name="best_monitored")
        stale_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_without_improvement")

    checkpoint = tf.train.Checkpoint(model=loop.model_variables(net), optimizer=optimizer,
                                     epoch=epoch_var, best_monitored=best_var,
                                     epochs_without_improvement=stale_var)
    # Under multi_worker every worker must take part in saving; only the chief's copy is real.
    ckpt_dir = run.checkpoints if chief else tempfile.mkdtemp(prefix="worker-ckpt-")
    manager = tf.train.CheckpointManager(checkpoint, ckpt_dir, max_to_keep=2)
    if resuming:
        checkpoint.restore(tf.train.latest_checkpoint(run.checkpoints)).assert_existing_objects_matched()
    start_epoch = int(epoch_var.numpy())
    history = [row for row in run.read_history() if row["epoch"] <= start_epoch]
    if resuming:
        print(f"Resuming {run.path} after epoch {start_epoch} (best {f.best_metric} {float(best_var.numpy()):.4g})",
              flush=True)
    input_size = age_model_lib.input_size(net)
    if chief:
        run.write_info({"records": os.path.abspath(f.records), "image_size": manifest["image_size"],
                        "input_size": input_size, "variant": f.variant, "task": f.task})
    finished = (f"all {f.epochs} epochs already done" if start_epoch >= f.epochs else
                "stopped early before" if f.patience and int(stale_var.numpy()) >= f.patience else None)
    if finished:   # nothing to train: no cache, no datasets, straight to evaluation
        print(f"{run.path}: {finished}; nothing left to train", flush=True)
        return run.path if chief else None

    # What the loop trains on: images through the whole age model, or (feature cache)
    # the frozen trunk's cached pool5 outputs through the head, which shares its
    # layers with `net`, so checkpoints and best.keras hold the full age model either way.
    data_dir, data_size, train_net = f.records, input_size, net
    if f.cache_features:
        data_dir = features.ensure(net, f.records, weights, f.variant, f.seed,
                                   allow_build=not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy))
        data_size = None
        with strategy.scope():
            train_net = age_model_lib.head(net)

    steps_per_epoch = f.steps_per_epoch or max(1, manifest["splits"]["train"]["count"] // global_batch)
    # A resumed run reseeds the data order from the epoch it resumes at: the order
    # is then a function of (seed, resume epoch), reproducible for the same kill point.
    data_seed = f.seed + 1_000_003 * start_epoch
    train_data = records.distribute(strategy, data_dir, "train", global_batch, training=True,
                                    seed=data_seed, augment=f.augment, shuffle_buffer=f.shuffle_buffer,
                                    image_size=data_size)
    val_data = records.make_dataset(data_dir, f.validation_split, f.eval_batch_size or global_batch,
                                    training=False, image_size=data_size)

    trainer = loop.Loop(strategy, train_net, optimizer, global_batch_size=global_batch,
                        with_gender=with_gender, jit_compile=f.jit_compile)
    summary = tf.summary.create_file_writer(run.tensorboard) if chief else tf.summary.create_noop_writer()
    reporter = EpochReporter(steps_per_epoch, f.epochs)
    iterator = iter(train_data)
    steps_per_call = max(1, min(steps_per_epoch, 20 if reporter.tty else steps_per_epoch))

    for epoch in range(start_epoch, f.epochs):
        reporter.start(epoch)
        started = time.perf_counter()
        sums, done = None, 0
        while done < steps_per_epoch:
            n = min(steps_per_call, steps_per_epoch - done)
            chunk = trainer.train(iterator, n)
            sums = chunk if sums is None else {k: sums[k] + chunk[k] for k in sums}
            done += n
            reporter.update(done, loop.metrics(sums))
        train_seconds = time.perf_counter() - started
        train_metrics = loop.metrics(sums)
        if not loop.is_finite(train_metrics["loss"]):
            raise FloatingPointError(
                f"training loss became {train_metrics['loss']} in epoch {epoch + 1}; lower "
                f"--learning_rate (now {f.learning_rate}) or use --mixed_precision=bf16/none")
        val_metrics = loop.metrics(trainer.evaluate(val_data))
        row = {"epoch": epoch + 1, **train_metrics, **{f"val_{k}": v for k, v in val_metrics.items()},
               "epoch_seconds": time.perf_counter() - started,
               "images_per_second": sums["count"] / train_seconds}

        improved = row[f.best_metric] < float(best_var.numpy())
        if improved:
            best_var.assign(row[f.best_metric])
            stale_var.assign(0)
            if chief:
                save_best(net, run.best_model)
        else:
            stale_var.assign_add(1)
        history.append(row)
        if chief:
            run.write_history(history)
        with summary.as_default(step=epoch + 1):
            for k, v in row.items():
                if k != "epoch":
                    tf.summary.scalar(k, v)
        # The checkpoint is the commit point of an epoch: a kill before this line
        # repeats the epoch, a kill after it resumes with the next one.
        epoch_var.assign(epoch + 1)
        manager.save(checkpoint_number=epoch + 1)
        reporter.end(row)
        if f.patience and int(stale_var.numpy()) >= f.patience:
            print(f"Early stopping: {f.best_metric} has not improved for {f.patience} epochs", flush=True)
            break

    if not chief:
        tf.io.gfile.rmtree(ckpt_dir)
    summary.flush()
    print(f"Best model: {run.best_model} ({f.best_metric} {float(best_var.numpy()):.4g})", flush=True)
    return run.path if chief else None
