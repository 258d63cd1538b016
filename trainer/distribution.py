"""Which tf.distribute strategy a run uses, and which worker is the chief.

Every run goes through a strategy, the default one included, so the training
loop has one code path from a laptop CPU to several GPU hosts.
"""

from __future__ import annotations

import json
import os
import socket
import time

import tensorflow as tf

from errors import ProjectError
from records.service.address import split_host_port

PEER_RETRY_SECONDS = 1.0     # between two connect attempts to a peer that is not up yet
CONNECT_SECONDS = 2.0        # one TCP connect attempt


class ClusterError(ProjectError):
    """A multi-worker cluster that cannot form; the message names the peer and the fix."""


def split_cpu(logical_cpus: int) -> None:
    """Expose the host CPU as `logical_cpus` devices (must run before TF initialises)."""
    if logical_cpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(logical_cpus)])


def _address(entry: str) -> tuple[str, int]:
    try:
        host, port = split_host_port(entry, "a host:port address")
    except ValueError as e:
        raise ClusterError(f"TF_CONFIG: {entry!r} {e}; fix the cluster in TF_CONFIG") from None
    return host.strip("[]"), port


def peers(tf_config: dict) -> tuple[tuple[str, int], list[tuple[str, str, int]]]:
    """This task's (host, port) and every other task's (name, host, port) from TF_CONFIG."""
    cluster, task = tf_config.get("cluster") or {}, tf_config.get("task") or {}
    me = (task.get("type"), task.get("index"))
    mine, others = None, []
    for task_type, entries in cluster.items():
        for index, entry in enumerate(entries):
            host, port = _address(entry)
            if (task_type, index) == me:
                mine = (host, port)
            else:
                others.append((f"{task_type} {index}", host, port))
    if mine is None:
        raise ClusterError(f"TF_CONFIG: task {me[0]} {me[1]} is not in its cluster {sorted(cluster)}; "
                           f"fix 'task' (type and index) in TF_CONFIG")
    return mine, others


def wait_for_peers(tf_config: dict, timeout: float) -> None:
    """Return once every other task of the cluster accepts a TCP connection; a peer that
    does not within `timeout` seconds ends the run with one line naming it.

    MultiWorkerMirroredStrategy itself waits forever for a peer that never starts.
    While probing, this task listens on its own port, so peers probing it see it up
    (every worker runs this same check before creating the strategy, which starts the
    real server on that port); the listener is closed before the strategy is made."""
    (_, my_port), others = peers(tf_config)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("", my_port))
        listener.listen(64)
    except OSError as e:
        listener.close()
        raise ClusterError(f"TF_CONFIG: this task's port {my_port} cannot be listened on ({e.strerror}); "
                           f"free the port or give this task another one in TF_CONFIG") from e
    deadline = time.monotonic() + timeout
    try:
        for name, host, port in others:
            why = "not tried"
            while True:
                try:
                    with socket.create_connection((host, port), timeout=CONNECT_SECONDS):
                        break
                except OSError as e:
                    why = e.strerror or str(e) or type(e).__name__
                if time.monotonic() >= deadline:
                    raise ClusterError(
                        f"--strategy=multi_worker: peer {name} at {host}:{port} unreachable for "
                        f"{timeout:g} s ({why}); start the same command there, fix TF_CONFIG, "
                        f"or raise --cluster_timeout")
                time.sleep(min(PEER_RETRY_SECONDS, max(0.0, deadline - time.monotonic())))
    finally:
        listener.close()


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
