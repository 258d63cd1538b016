"""Dispatcher addresses: parsing, and a TCP connect with a deadline (no TensorFlow
import, so the server commands can reject a bad address in one line, at once)."""

from __future__ import annotations

import socket

from entry.errors import ProjectError

CONNECT_TIMEOUT_S = 5.0                 # check_address: how long a dispatcher may take to accept


class ServiceError(ProjectError):
    """A tf.data service problem stated in one line (unreachable dispatcher, bad address)."""


def parse_address(address: str) -> tuple[str, int]:
    """`grpc://HOST:PORT` or `HOST:PORT` -> (HOST, PORT)."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ServiceError(f"tf.data service address {address!r} is not grpc://HOST:PORT "
                           f"(e.g. grpc://localhost:5050)")
    return host, int(port)


def check_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> str:
    """The dispatcher target `grpc://HOST:PORT` once a TCP connect to it succeeds
    within `timeout` seconds; otherwise `ServiceError` in one line."""
    host, port = parse_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        reason = "timed out" if isinstance(e, socket.timeout) else (e.strerror or str(e))
        raise ServiceError(
            f"no tf.data service dispatcher at {host}:{port} ({reason} within {timeout:g} s); "
            f"start one with `python -m records.service dispatcher --port {port}` "
            f"or fix the address") from None
    return f"grpc://{host}:{port}"
