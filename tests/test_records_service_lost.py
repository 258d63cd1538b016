"""An epoch through tf.data service that does not end within its deadline names what
was lost: the dispatcher when its address no longer accepts a connection, else a
worker (`records.service.run_epoch`, `lost_server`). No servers are started."""

from __future__ import annotations

import socket
import threading

import pytest

from records import service


def blocked_epoch(dispatcher: str | None) -> str:
    """run_epoch on a stream that delivers 5 records, then blocks as a lost server leaves it."""
    batches, never = iter([3, 2]), threading.Event()

    def step() -> int:
        n = next(batches, None)
        if n is None:
            never.wait()
        return n

    with pytest.raises(service.EpochTimeout) as e:
        service.run_epoch(step, 5, 0.5, what="epoch 3", dispatcher=dispatcher)
    return str(e.value)


def test_a_dispatcher_that_no_longer_answers_is_named_as_lost():
    with socket.socket() as s:                  # a port that was free a moment ago: nobody listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert blocked_epoch(f"grpc://127.0.0.1:{port}") == (
        f"epoch 3 did not end within 0.5 s: 5 of 5 records arrived (0 missing); the tf.data service "
        f"dispatcher at 127.0.0.1:{port} was lost (it no longer accepts connections): restart it "
        f"(`python -m records.service dispatcher --trusted_network --port {port}`), then rerun the same command")


def test_a_dispatcher_that_answers_leaves_the_blame_on_a_worker():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        said = blocked_epoch(f"127.0.0.1:{port}")
    assert said == ("epoch 3 did not end within 0.5 s: 5 of 5 records arrived (0 missing); "
                    "a tf.data service worker was probably lost")
    assert service.lost_server(None) == "a tf.data service worker was probably lost"
