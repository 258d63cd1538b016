"""Which tf.distribute strategy a run uses, and which worker is the chief.

Every run goes through a strategy, the default one included, so the training
loop has one code path from a laptop CPU to several GPU hosts.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf


def split_cpu(logical_cpus: int) -> None:
    """Expose the host CPU as `logical_cpus` devices (must run before TF initialises)."""
    if logical_cpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(logical_cpus)])


def make_strategy(name: str) -> tf.distribute.Strategy:
    """`default`: one device. `mirrored`: every local GPU, or every logical CPU when
    there is no GPU. `multi_worker`: the cluster described by TF_CONFIG; it must be
    created before any other TensorFlow op, so call this first."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        # On CPUs, NCCL is not there; the hierarchical-copy default needs GPUs too.
        cross = None if gpus else tf.distribute.ReductionToOneDevice()
        return tf.distribute.MirroredStrategy(devices, cross_device_ops=cross)
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the one process that writes checkpoints, summaries and reports."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    # Without a 'chief' task, worker 0 is the chief (TF's convention).
    has_chief = "chief" in json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def describe(strategy: tf.distribute.Strategy) -> str:
    workers = getattr(getattr(strategy, "cluster_resolver", None), "cluster_spec", lambda: None)()
    num_workers = len(workers.as_dict().get("worker", [])) + len(workers.as_dict().get("chief", [])) \
        if workers else 1
    return (f"{type(strategy).__name__}: {strategy.num_replicas_in_sync} replica(s) in sync, "
            f"{num_workers or 1} worker(s)")


def log_strategy(strategy: tf.distribute.Strategy) -> None:
    print(f"Strategy: {describe(strategy)}", flush=True)
