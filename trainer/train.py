"""The training run, as named stages: shards -> streaming reader -> age model -> best.keras.

`train(config)` runs them in this order, on purpose:

    check_inputs     (trainer.inputs) every manifest (the validation set and each
                     training source), the batch size, --best_metric and the service
                     address, before TensorFlow builds anything (bad input costs one
                     line, not a traceback after minutes of model building)
    make_strategy    before any other op (MultiWorkerMirroredStrategy requires it)
    open_run         the run directory: ours or refused, one writer (the lock), resume or
                     refuse (trainer.resume: run.json's settings and data sets), a
                     killed run's partial files removed, flags.txt
    build_state      model, optimizer and the epoch/best/stale counters: everything a
                     checkpoint holds (initial weights and freezing are decided here,
                     before the optimizer is built)
    restore          the newest readable checkpoint of the run, if it has one (a damaged
                     one falls back to the previous); history and best.keras cut back to it
    make_datasets    what the loop trains on: image shards, or the feature cache, read
                     in this process or (--data_service) on tf.data service workers
    run_epochs       train + validate each epoch, then the end-of-epoch actions (trainer.actions:
                     best.keras, history, TensorBoard, checkpoint, early stop); progress shown

`trainer.__main__` builds the `TrainConfig` from the flags, calls `train`, then
evaluates best.keras at the run's eval batch size.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
from typing import Callable

import keras
import tensorflow as tf

import faces.framing
import model as age_model_lib
import records
from errors import ProjectError
from model import metrics, transfer
from records import service, verify
from records.identity import data_identity
from storage.run_dir import RunDir
from trainer import actions, checkpoints, distribution, features, loop
from trainer import history as history_lib
from trainer.config import MIXED_PRECISION_POLICIES, TrainConfig
from trainer.inputs import check_inputs, no_spread, steps_per_epoch, train_counts
from trainer.reporter import EpochReporter
from trainer.resume import check_run_dir, training_identity

# A resumed run reseeds its data order from the epoch it resumes at, so the order is
# a function of (seed, resume epoch): reproducible for the same kill point.
RESUME_SEED_STRIDE = 1_000_003
STEPS_PER_CALL = 20       # training steps per call into the compiled loop, between progress updates


class TrainingDiverged(ProjectError):
    """The training loss became NaN or infinite; the message says what to change."""


def stored_as(manifest: dict) -> dict:
    """run.json's image_size, encoding and jpeg_quality: how the training faces were
    stored (faces.framing.Stored), which prediction repeats."""
    stored = faces.framing.stored(manifest)
    return stored.as_dict() if stored else {"image_size": manifest["image_size"]}


def learning_rate_schedule(config: TrainConfig, steps: int):
    """--learning_rate as a function of the optimizer's step: a linear warm-up from 0 over
    --warmup_epochs, then constant, or a cosine decay to 0 over the remaining steps."""
    warmup = config.warmup_epochs * steps
    if config.lr_schedule == "constant" and not warmup:
        return config.learning_rate
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else config.learning_rate,
        decay_steps=max(1, config.epochs * steps - warmup),
        alpha=1.0 if config.lr_schedule == "constant" else 0.0,   # alpha 1: no decay
        warmup_target=config.learning_rate if warmup else None, warmup_steps=warmup)


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    """The learning rate of the optimizer's next step (a schedule's value at its step)."""
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def make_optimizer(name: str, learning_rate) -> keras.optimizers.Optimizer:
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate)
    raise ValueError(f"unknown optimizer {name!r}")


def dry_run(config: TrainConfig) -> None:
    """Everything `train` checks before building, then the plan, and nothing else."""
    manifest, sources = check_inputs(config)
    run = RunDir(config.model_dir)
    run.check()
    check_run_dir(run, config, manifest, sources)
    print("\n".join(config.flag_lines))
    print(plan(config, manifest, sources), flush=True)


def plan(config: TrainConfig, manifest: dict, sources: list[dict]) -> str:
    """One line: epochs, steps, the training sources, the layers that train, validation."""
    total = sum(config.mix_weights)
    mixed = ", ".join(f"{d} ({n} records, {m['image_size']} px, weight {w / total:.2f})" for d, n, m, w
                      in zip(config.sources, train_counts(sources), sources, config.mix_weights))
    start = ("random initialisation" if config.weights is None and config.init_from is None
             else f"--init_from={config.init_from}" if config.init_from else f"--weights={config.weights}")
    layers = "every layer" if config.trainable_from == "all" else f"from {config.trainable_from} on"
    return (f"plan: {config.epochs} epochs x {steps_per_epoch(config, sources)} steps x {config.batch_size} "
            f"images from {sum(train_counts(sources))} training records of {mixed}; training {layers} "
            f"(--trainable_from={config.trainable_from}, from {start}); validating on "
            f"{manifest['splits'][config.validation_split]['count']} {config.validation_split} records "
            f"of {config.records}")


# --------------------------------------------------------------------------- stages

@dataclasses.dataclass
class State:
    """Everything a checkpoint holds, and the checkpoint itself."""
    net: keras.Model                 # the full age model (best.keras)
    optimizer: keras.optimizers.Optimizer
    epoch: tf.Variable               # completed epochs
    best: tf.Variable                # best --best_metric so far
    stale: tf.Variable               # epochs since it last improved
    checkpoint: tf.train.Checkpoint
    manager: tf.train.CheckpointManager
    checkpoint_dir: str


def open_run(config: TrainConfig, chief: bool, manifest: dict, sources: list[dict] = ()) -> tuple[RunDir, bool]:
    """The run directory, checked and ours; flags.txt written. Returns (run, resuming).

    The chief alone writes the directory: it refuses anything this project did not make,
    takes the one-writer lock (held until `train` returns), drops the marker first, removes
    a killed run's partial files and rewrites the checkpoint index from the checkpoint
    files. Every worker reads best.json here, before any worker can change it (building
    the state is the first collective step, so no chief gets past it alone)."""
    run = RunDir(config.model_dir)
    if chief:
        run.check()
        run.lock()
    try:
        resuming = check_run_dir(run, config, manifest, sources)
        if chief:
            with run.writing():
                run.make_ours()
                removed = run.remove_partial() + checkpoints.remove_partial(run.checkpoints)
                if removed:
                    print(f"{run.path}: removed what a killed run left: {', '.join(removed)}", flush=True)
                checkpoints.write_index(run.checkpoints)   # only this run's checkpoints, by plain name
                run.write_flags(list(config.flag_lines))
    except BaseException:
        run.release()
        raise
    run.best_record_at_start = run.read_best_record()
    return run, resuming


def initial_weights(config: TrainConfig, net: keras.Model, resuming: bool) -> None:
    """--init_from: the trained run's weights into `net` (a resumed run restores its own)."""
    if config.init_from is None or resuming:
        return
    if config.weights is not None:
        print(f"--init_from={config.init_from} takes precedence over --weights={config.weights} "
              f"(not loaded)", flush=True)
    source = transfer.load_source(config.init_from_file)
    print(transfer.carry_weights(net, source, config.init_from_file), flush=True)


def build_state(config: TrainConfig, strategy: tf.distribute.Strategy, run: RunDir, chief: bool,
                steps: int, resuming: bool = False) -> State:
    """The model (initial weights, freezing), the optimizer over its trainable
    variables (its learning rate a schedule over `steps` per epoch), the counters, and
    the checkpoint that holds them all."""
    loop.set_seeds(config.seed)
    keras.mixed_precision.set_global_policy(MIXED_PRECISION_POLICIES[config.mixed_precision] or "float32")
    with strategy.scope():
        net = age_model_lib.build_age_model(None if config.init_from else config.weights,
                                            gender=config.with_gender, variant=config.variant,
                                            dropout=config.dropout, trainable_from=config.trainable_from)
        initial_weights(config, net, resuming)
        # Trainable variables are final here: the optimizer's slots follow them.
        optimizer = make_optimizer(config.optimizer, learning_rate_schedule(config, steps))
        if config.mixed_precision == "fp16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(net.trainable_variables)  # slots must exist before a restore
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        best = tf.Variable(float("inf"), dtype=tf.float64, trainable=False, name="best_monitored")
        stale = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_without_improvement")
    checkpoint = tf.train.Checkpoint(model=loop.model_variables(net), optimizer=optimizer, epoch=epoch,
                                     best_monitored=best, epochs_without_improvement=stale)
    # Under multi_worker every worker must take part in saving; only the chief's copy is real.
    checkpoint_dir = run.checkpoints if chief else tempfile.mkdtemp(prefix="worker-ckpt-")
    manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=2)
    return State(net, optimizer, epoch, best, stale, checkpoint, manager, checkpoint_dir)


def restore(state: State, run: RunDir, config: TrainConfig, chief: bool) -> int:
    """Continue from the run's newest readable checkpoint (a damaged one falls back to the
    previous, and says so); returns the number of completed epochs.

    What was written after that checkpoint is cut back to it: history rows of later
    epochs, and a best.keras saved in a later epoch (best.json says which), unless the
    restored best agrees with it. Such a best.keras is replaced by the restored model,
    and the best record restarts at the restored epoch's --best_metric."""
    checkpoints.restore(state.checkpoint, run.checkpoints)
    start_epoch = int(state.epoch.numpy())
    history = run.read_history()
    kept = [row for row in history if row["epoch"] <= start_epoch]
    record = run.best_record_at_start
    if record is not None and record["epoch"] > start_epoch and record.get("value") != float(state.best.numpy()):
        value = next((row[config.best_metric] for row in kept
                      if row["epoch"] == start_epoch and config.best_metric in row), float("inf"))
        state.best.assign(value)
        state.stale.assign(0)
        if chief:
            with run.writing():
                actions.save_best(state.net, run, start_epoch, config.best_metric, value)
        print(f"{run.best_model} was saved in epoch {record['epoch']}, after the restored epoch {start_epoch}: "
              f"replaced by the model of epoch {start_epoch} ({config.best_metric} {value:.4g})", flush=True)
    if chief and len(kept) != len(history):
        with run.writing():
            history_lib.write_history(run, kept)
        print(f"{run.file('history.csv')}: cut back to epoch {start_epoch}", flush=True)
    print(f"Resuming {run.path} after epoch {start_epoch} "
          f"(best {config.best_metric} {float(state.best.numpy()):.4g})", flush=True)
    return start_epoch


@dataclasses.dataclass
class Datasets:
    train: tf.distribute.DistributedDataset | None   # None with --data_service
    val: tf.data.Dataset
    net: keras.Model                 # what the loop trains: the age model or its head
    # --data_service: epoch -> that epoch's DistributedDataset (one service job per epoch),
    # and the training records an epoch must deliver (the manifest's count).
    service_epoch: Callable[[int], tf.distribute.DistributedDataset] | None = None
    train_count: int = 0


def make_datasets(config: TrainConfig, state: State, strategy: tf.distribute.Strategy,
                  start_epoch: int) -> Datasets:
    """Images through the whole age model, or (feature cache) the frozen trunk's cached
    pool5 outputs through the head, which shares its layers with `state.net`, so
    checkpoints and best.keras hold the full age model either way."""
    train_dirs, val_dir = config.sources, config.records
    input_side, train_net = age_model_lib.input_size(state.net), state.net
    if config.cache_features:
        multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        val_dir = features.ensure(state.net, config.records, config.weights, config.variant, config.seed,
                                  allow_build=not multi_worker)
        train_dirs = (val_dir,)
        input_side = None               # features: nothing to resize
        with strategy.scope():
            train_net = age_model_lib.head(state.net)
    val = records.make_dataset(val_dir, config.validation_split, config.eval_batch_size,
                               training=False, resize_to=input_side)
    if config.data_service:
        # The same pipeline as one finite epoch per service job; every replica of every
        # trainer process joins the epoch's job (records.service.distribute). One source
        # (TrainConfig.check).
        name = service.run_name(strategy, os.path.basename(os.path.normpath(config.model_dir)))
        (source,) = train_dirs

        def service_epoch(epoch: int) -> tf.distribute.DistributedDataset:
            return service.distribute(strategy, config.data_service, source, "train", config.batch_size,
                                      name=name, epoch=epoch, seed=config.seed, augment=config.augmentation,
                                      shuffle_buffer=config.shuffle_buffer, resize_to=input_side)

        count = records.read_manifest(source)["splits"]["train"]["count"]
        return Datasets(None, val, train_net, service_epoch, count)
    # Several sources: each its own shuffled stream, resized, sampled by weight (records.reader).
    train = records.distribute(strategy, train_dirs, "train", config.batch_size, weights=config.mix_weights,
                               training=True, seed=config.seed + RESUME_SEED_STRIDE * start_epoch,
                               augment=config.augmentation, shuffle_buffer=config.shuffle_buffer,
                               resize_to=input_side)
    return Datasets(train, val, train_net)


def default_actions(config: TrainConfig, state: State, run: RunDir, chief: bool,
                    reporter: EpochReporter, summary, started: float) -> list[actions.Action]:
    """The end of an epoch, in order (see trainer.actions for why this order)."""
    out = [actions.new_best_model(state.net, run, config.best_metric), actions.write_history(run)] if chief else []
    return out + [actions.tensorboard(summary), actions.checkpoint(state.manager, state.epoch),
                  reporter.action, actions.early_stop(config.patience, state.stale, config.best_metric),
                  actions.time_limit(config.time_limit, started)]


def train_one_epoch(trainer: loop.Loop, iterator, steps: int, steps_per_call: int,
                    reporter: EpochReporter) -> dict:
    """Summed training metrics of `steps` steps, run `steps_per_call` at a time."""
    sums, done = None, 0
    while done < steps:
        n = min(steps_per_call, steps - done)
        chunk = trainer.train(iterator, n)
        sums = chunk if sums is None else {k: sums[k] + chunk[k] for k in sums}
        done += n
        reporter.update(done, loop.metrics(sums))
    return sums


def train_service_epoch(trainer: loop.Loop, data: Datasets, epoch: int, deadline_s: float,
                        reporter: EpochReporter, dispatcher: str | None = None) -> dict:
    """One epoch of --data_service: one step at a time until the job's stream ends,
    within `deadline_s` (a lost worker or a lost `dispatcher` can block it:
    `service.EpochTimeout`, one line naming which).
    Records a lost worker took with it are counted and reported."""
    iterator = iter(data.service_epoch(epoch))
    sums, done = {}, [0]

    def step() -> int:
        chunk = trainer.train(iterator, 1)
        for k, v in chunk.items():
            sums[k] = sums.get(k, 0.0) + v
        done[0] += 1
        reporter.update(min(done[0], reporter.steps), loop.metrics(sums))
        return int(chunk["count"])

    report = service.run_epoch(step, data.train_count, deadline_s, what=f"epoch {epoch + 1}",
                               dispatcher=dispatcher)
    if report.missed:
        print(f"warning: epoch {epoch + 1} through the tf.data service: {report}", flush=True)
    if not sums:
        raise service.ServiceError(f"epoch {epoch + 1}: the tf.data service delivered no training "
                                   f"records; check that its workers can read the shards")
    return sums


def run_epochs(config: TrainConfig, state: State, data: Datasets, strategy: tf.distribute.Strategy,
               run: RunDir, chief: bool, start_epoch: int, history: list[dict], steps: int,
               started: float) -> str:
    """Train and validate from `start_epoch` to --epochs, ending each epoch with the
    actions; returns the one line saying why training stopped."""
    trainer = loop.Loop(strategy, data.net, state.optimizer, global_batch_size=config.batch_size,
                        with_gender=config.with_gender, jit_compile=config.jit_compile)
    summary = tf.summary.create_file_writer(run.tensorboard) if chief else tf.summary.create_noop_writer()
    reporter = EpochReporter(steps, config.epochs)
    end_of_epoch = default_actions(config, state, run, chief, reporter, summary, started)
    iterator = iter(data.train) if data.train is not None else None
    # A few steps per call, so the progress (a bar on a terminal, a line every
    # trainer.reporter.LOG_SECONDS in a log) sees the epoch move.
    steps_per_call = max(1, min(steps, STEPS_PER_CALL))
    why = f"Training finished: all {config.epochs} epochs done"

    for epoch in range(start_epoch, config.epochs):
        reporter.start(epoch)
        started = time.perf_counter()
        if data.service_epoch is not None:
            sums = train_service_epoch(trainer, data, epoch, config.data_service_deadline, reporter,
                                       config.data_service)
        else:
            sums = train_one_epoch(trainer, iterator, steps, steps_per_call, reporter)
        train_seconds = time.perf_counter() - started
        train_metrics = loop.metrics(sums)
        if not math.isfinite(train_metrics["loss"]):
            raise TrainingDiverged(
                f"training loss became {train_metrics['loss']} in epoch {epoch + 1}; lower "
                f"--learning_rate (now {config.learning_rate}) or use --mixed_precision=bf16/none")
        val_metrics = loop.metrics(trainer.evaluate(data.val))
        row = {"epoch": epoch + 1, **train_metrics, **{metrics.val(k): v for k, v in val_metrics.items()},
               "learning_rate": current_learning_rate(state.optimizer),
               "epoch_seconds": time.perf_counter() - started,
               "images_per_second": sums["count"] / train_seconds}
        if config.best_metric not in row:     # only val_epsilon_error can be missing
            raise no_spread(config)
        history.append(row)
        improved = actions.record_best(state.best, state.stale, row[config.best_metric])
        end = actions.EpochEnd(epoch + 1, row, improved, history)
        with run.writing(f"free space on that disk, then rerun the same command: it resumes "
                         f"from epoch {int(state.epoch.numpy()) + 1}"):     # the last commit point
            reasons = [action(end) for action in end_of_epoch]     # every action runs
        if any(reasons):
            why = f"Training stopped after epoch {epoch + 1} of {config.epochs}: {'; '.join(filter(None, reasons))}"
            break
    summary.flush()
    return why


def finished(config: TrainConfig, state: State, start_epoch: int) -> str | None:
    """Why there is nothing left to train, or None."""
    if start_epoch >= config.epochs:
        return f"all {config.epochs} epochs already done"
    if config.patience and int(state.stale.numpy()) >= config.patience:
        return "stopped early before"
    return None


# --------------------------------------------------------------------------- the run

def train(config: TrainConfig) -> str | None:
    """Run the whole job described by `config`; returns the run directory on the
    chief (the process that evaluates afterwards), None on other workers."""
    started = time.monotonic()                # --time_limit counts from here
    manifest, sources = check_inputs(config)
    steps = steps_per_epoch(config, sources)
    distribution.split_cpu(config.logical_cpus)
    if config.strategy == "multi_worker":     # the strategy itself would wait forever for a missing peer
        distribution.wait_for_peers(json.loads(os.environ["TF_CONFIG"]), config.cluster_timeout)
    strategy = distribution.make_strategy(config.strategy)
    distribution.log_strategy(strategy)
    chief = distribution.is_chief(strategy)
    if chief:
        print(plan(config, manifest, sources), flush=True)

    run, resuming = open_run(config, chief, manifest, sources)
    try:                                      # the chief holds the run directory's lock until here
        state = build_state(config, strategy, run, chief, steps, resuming)
        start_epoch = restore(state, run, config, chief) if resuming else 0
        history = [row for row in run.read_history() if row["epoch"] <= start_epoch]
        if chief:
            with run.writing():
                run.write_info({"records": os.path.abspath(config.records), "data": data_identity(manifest),
                                "input_size": age_model_lib.input_size(state.net),
                                # image_size, encoding, jpeg_quality: how its faces were stored
                                **stored_as(manifest),
                                # detector, aligned, margin of the faces it learns (faces.framing)
                                **faces.framing.of(manifest).as_dict(), **config.info(),
                                "train_records": [os.path.abspath(d) for d in config.sources],
                                "train_data": [training_identity(m) for m in sources],
                                "records_weights": list(config.mix_weights),
                                "init_from": (os.path.abspath(config.init_from_file) if config.init_from
                                              else run.read_info(missing_ok=True).get("init_from"))})
        done = finished(config, state, start_epoch)
        if done:   # nothing to train: no cache, no datasets, straight to evaluation
            print(f"{run.path}: {done}; nothing left to train", flush=True)
            return run.path if chief else None

        with verify.naming_damage([*config.sources, config.records]):   # a flipped byte mid-epoch
            data = make_datasets(config, state, strategy, start_epoch)
            why = run_epochs(config, state, data, strategy, run, chief, start_epoch, history, steps, started)
        if not chief:
            tf.io.gfile.rmtree(state.checkpoint_dir)
        print(why, flush=True)
        print(f"Best model: {run.best_model} ({config.best_metric} {float(state.best.numpy()):.4g})", flush=True)
        return run.path if chief else None
    finally:
        run.release()
