"""trainer.distribution: the peer check that keeps a multi-worker run from waiting forever."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from conftest import free_ports
from trainer import distribution


def tf_config(ports: list[int], index: int) -> dict:
    return {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}


def test_an_unreachable_peer_ends_the_wait_with_one_line_naming_it():
    ports = free_ports(3)
    started = time.monotonic()
    with pytest.raises(distribution.ClusterError) as e:
        distribution.wait_for_peers(tf_config(ports, 0), timeout=1.5)
    elapsed = time.monotonic() - started
    msg = str(e.value)
    assert msg.startswith(f"--strategy=multi_worker: peer worker 1 at 127.0.0.1:{ports[1]} unreachable for 1.5 s")
    assert "--cluster_timeout" in msg and "\n" not in msg
    assert 1.5 <= elapsed < 6


def test_peers_that_start_at_different_times_all_pass():
    # Every worker runs the same check before its strategy exists: each listens on its
    # own port while it probes the others, so none waits for a server that is not started.
    # After its check a worker starts its server (here: a listener held until the end).
    ports = free_ports(3)
    errors, servers = [], []

    def worker(index, delay):
        time.sleep(delay)
        try:
            distribution.wait_for_peers(tf_config(ports, index), timeout=20)
        except Exception as e:     # noqa: BLE001  (reported below)
            errors.append(e)
            return
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("", ports[index]))
        server.listen(8)
        servers.append(server)

    threads = [threading.Thread(target=worker, args=(i, 0.7 * i)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for server in servers:
        server.close()
    assert errors == [] and not any(t.is_alive() for t in threads) and len(servers) == 3


def test_a_task_missing_from_its_cluster_is_one_line():
    config = tf_config(free_ports(2), 5)
    with pytest.raises(distribution.ClusterError, match=r"TF_CONFIG: task worker 5 is not in its cluster"):
        distribution.wait_for_peers(config, timeout=1)


def test_a_malformed_address_is_one_line():
    config = {"cluster": {"worker": ["127.0.0.1:1", "nohost"]}, "task": {"type": "worker", "index": 0}}
    with pytest.raises(distribution.ClusterError, match=r"'nohost' is not a host:port address"):
        distribution.wait_for_peers(config, timeout=1)
    config["cluster"]["worker"][1] = "localhost:99999"
    with pytest.raises(distribution.ClusterError, match=r"^TF_CONFIG: 'localhost:99999' has port 99999, "
                                                        r"outside 1..65535; fix the cluster in TF_CONFIG$"):
        distribution.wait_for_peers(config, timeout=1)
