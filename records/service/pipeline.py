"""The tf.data service pipeline and its per-epoch consumer (see records.service)."""

from __future__ import annotations

import dataclasses
import random
import secrets
import threading
import time
from typing import Callable

import tensorflow as tf

from records import reader
from records.manifest import read_manifest, split_shards
from records.schema import DEFAULT_SHUFFLE_BUFFER
from records.service.address import ServiceError, check_address, parse_address

PROCESSING_MODE = "distributed_epoch"   # each record once per epoch (not "parallel_epochs")
# Files a worker reads at once. Under distributed_epoch every file a worker's interleave
# opens is handed to it by the dispatcher, so a small cycle keeps files spread over workers
# (and bounds what a lost worker takes with it).
SERVICE_CYCLE = 4
LOST_CHECK_S = 5.0      # after an epoch's deadline: how long the dispatcher may take to accept


class EpochTimeout(ServiceError):
    """An epoch did not end within its deadline (a worker was lost and the job blocks)."""


# --------------------------------------------------------------------------- pipeline

def epoch_dataset(directory: str, split: str, batch_size: int, *, epoch: int = 0,
                  seed: int | None = None, shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
                  augment: bool = False, resize_to: int | None = None,
                  with_keys: bool = False) -> tf.data.Dataset:
    """One epoch of `split` as `(images, labels)` batches, finite, the reader's labels
    ("age", "gender", "age_mean", "age_std", "real_age"[, "key"]),
    for a tf.data service job in `distributed_epoch` mode (the dataset the workers run).

    The last batch of each worker may be partial (no drop_remainder), so every record of
    the epoch reaches the trainer. Every consumer of one job must build the identical
    dataset: the file order depends on `seed` and `epoch` only (seed None counts as 0).
    """
    files, counts, decode, _ = reader.open_split(directory, split, resize_to=resize_to,
                                                 with_keys=with_keys)
    order = list(range(len(files)))
    random.Random(f"{seed or 0}-{epoch}").shuffle(order)
    record_seed = None if seed is None else seed + 1 + epoch
    # 1. The file list in this epoch's order. This is the dataset's source: the
    #    dispatcher hands its elements (files) out to workers one at a time, so the
    #    shuffle happens here, in Python, before the service splits it. (A
    #    Dataset.shuffle after the source would run on a worker and pull every file to it.)
    ds = tf.data.Dataset.from_tensor_slices([files[i] for i in order])
    # 2. Parallel interleave of the files this worker was handed (small cycle: see
    #    SERVICE_CYCLE). No assert_cardinality: a worker sees only part of the files,
    #    so the manifest's count cannot hold per worker; `run_epoch` checks it instead.
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), SERVICE_CYCLE),
                       block_length=1, num_parallel_calls=reader.AUTOTUNE)
    # 3. Record shuffle within the worker; no repeat: one job is one epoch.
    ds = ds.shuffle(shuffle_buffer, seed=record_seed)
    # 4.-6. Batch, parse + decode, (augment): the reader's own steps 9-11.
    ds = reader.decode_batches(ds, decode, batch_size, drop_remainder=False,
                               augment=augment, seed=record_seed)
    # 7. The reader's options; the service splits the data, so tf.distribute must not.
    ds = ds.with_options(reader.pipeline_options(seed is not None, sharded=True))
    # 8. Prefetch on the worker, so batches are ready when a consumer asks.
    return ds.prefetch(reader.AUTOTUNE)


def run_name(strategy: tf.distribute.Strategy, prefix: str) -> str:
    """A job-name prefix that every trainer process of this run agrees on and that is
    new for every run attempt (a resumed run must not join the job a crashed attempt
    left behind): each process draws a random number and all take the sum."""
    mine = tf.constant(secrets.randbits(40), tf.int64)   # summed over <= 2^20 replicas
    agreed = strategy.reduce(tf.distribute.ReduceOp.SUM,
                             strategy.run(lambda: tf.identity(mine)), axis=None)
    return f"{prefix}-{int(agreed):x}"


def job_name(name: str, epoch: int) -> str:
    """One tf.data service job per epoch: every consumer of the epoch joins it."""
    return f"{name}-epoch{epoch:05d}"


def distribute(strategy: tf.distribute.Strategy, address: str, directory: str, split: str,
               global_batch_size: int, *, name: str, epoch: int, compression: str = "NONE",
               **kwargs) -> tf.distribute.DistributedDataset:
    """`epoch_dataset` run on the tf.data service at `address`, streamed to every replica
    of `strategy`: each trainer process's input pipeline is a consumer of the job
    `job_name(name, epoch)` and tf.distribute hands its batches to the process's
    replicas, so the replicas of all trainer processes share one epoch (each record
    goes to one replica).

    `name` must be the same in every trainer process of the run and new for every run
    attempt (a job that already exists is joined, not restarted): see `run_name`.
    compression: how workers compress batches for the wire: "NONE" (default: snappy cost
    1.6-3x the throughput in bench.service) or "AUTO" (tf.data's choice, snappy) when
    the network, not the CPU, is the limit.
    kwargs go to `epoch_dataset` (seed=, augment=, resize_to=, with_keys=, shuffle_buffer=).
    """
    target = check_address(address)
    split_shards(directory, read_manifest(directory), split)   # fail here, not in dataset_fn
    if global_batch_size % strategy.num_replicas_in_sync:
        raise ValueError(f"global_batch_size {global_batch_size} is not divisible by the "
                         f"{strategy.num_replicas_in_sync} replicas of {type(strategy).__name__}")

    def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        ds = epoch_dataset(directory, split, ctx.get_per_replica_batch_size(global_batch_size),
                           epoch=epoch, **kwargs)
        return ds.apply(tf.data.experimental.service.distribute(
            PROCESSING_MODE, target, job_name=job_name(name, epoch),
            compression=None if compression == "NONE" else compression))

    return strategy.distribute_datasets_from_function(dataset_fn)


# --------------------------------------------------------------------------- consumer

@dataclasses.dataclass
class EpochReport:
    """What one epoch delivered, counted against what the manifest promises."""
    expected: int
    seen: int
    seconds: float

    @property
    def missed(self) -> int:
        return self.expected - self.seen

    def __str__(self) -> str:
        text = f"{self.seen} of {self.expected} records in {self.seconds:.1f} s"
        if self.missed:
            text += (f"; {self.missed} missed (a tf.data service worker was lost and its "
                     f"records were dropped)" if self.missed > 0 else
                     f"; {-self.missed} more than expected (records repeated)")
        return text


def lost_server(dispatcher: str | None, timeout: float = LOST_CHECK_S) -> str:
    """What most likely blocked an epoch: the dispatcher at `dispatcher` (its address)
    when it no longer accepts a TCP connection within `timeout` seconds, else a worker
    (without an address, a worker)."""
    if dispatcher:
        try:
            check_address(dispatcher, timeout)
        except ServiceError:
            host, port = parse_address(dispatcher)
            return (f"the tf.data service dispatcher at {host}:{port} was lost (it no longer accepts "
                    f"connections): restart it (`python -m records.service dispatcher --trusted_network --port {port}`), "
                    f"then rerun the same command")
    return "a tf.data service worker was probably lost"


def run_epoch(step: Callable[[], int], expected: int, deadline_s: float,
              what: str = "epoch", dispatcher: str | None = None) -> EpochReport:
    """Call `step()` until the epoch's stream ends, within `deadline_s` seconds.

    step: consumes one batch and returns its number of records; it signals the end of
      the epoch with StopIteration or tf.errors.OutOfRangeError.
    Each step runs on a daemon thread so that a step blocked inside tf.data service
    (waiting on a lost worker) cannot outlive the deadline: `EpochTimeout` is raised
    in one line naming what arrived and what was lost (`lost_server`: the dispatcher at
    `dispatcher` when it no longer answers, else a worker). The blocked thread is
    abandoned; the caller is expected to stop (a process that times out should exit).
    """
    start = time.monotonic()
    seen = 0
    while True:
        remaining = deadline_s - (time.monotonic() - start)
        outcome: dict = {}

        def one():
            try:
                outcome["n"] = step()
            except (StopIteration, tf.errors.OutOfRangeError):
                outcome["end"] = True
            except BaseException as e:  # re-raised on the calling thread
                outcome["error"] = e

        thread = threading.Thread(target=one, name="run_epoch-step", daemon=True)
        thread.start()
        thread.join(max(remaining, 0.0))
        if thread.is_alive():
            raise EpochTimeout(
                f"{what} did not end within {deadline_s:g} s: {seen} of {expected} records "
                f"arrived ({expected - seen} missing); {lost_server(dispatcher)}")
        if "error" in outcome:
            raise outcome["error"]
        if outcome.get("end"):
            return EpochReport(expected, seen, time.monotonic() - start)
        seen += int(outcome["n"])


def count_records(iterator, keys: dict | None = None) -> Callable[[], int]:
    """A `run_epoch` step that only counts a batch (and, when `keys` is a dict, counts
    each record key in it: labels must carry "key", see `with_keys`)."""
    def local(value) -> list:
        # A distributed iterator yields PerReplica values: one tensor per local replica.
        return list(value.values) if hasattr(value, "values") else [value]

    def step() -> int:
        _, labels = next(iterator)
        if keys is not None:
            for part in local(labels["key"]):
                for k in part.numpy():
                    keys[k] = keys.get(k, 0) + 1
        return sum(int(tf.shape(part)[0]) for part in local(labels["age"]))
    return step
