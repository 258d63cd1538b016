"""Network addresses: `HOST:PORT` parsing (the one parser: tf.data service addresses
here, TF_CONFIG's cluster in trainer.distribution), and a TCP connect with a deadline.
No TensorFlow import, so the server commands reject a bad address in one line, at once."""

from __future__ import annotations

import socket

from errors import ProjectError

CONNECT_TIMEOUT_S = 5.0                 # check_address: how long a dispatcher may take to accept
MAX_PORT = 65535                        # TCP: a port to connect to is 1..MAX_PORT


class ServiceError(ProjectError):
    """A tf.data service problem stated in one line (unreachable dispatcher, bad address)."""


def split_host_port(text: str, form: str = "HOST:PORT") -> tuple[str, int]:
    """`HOST:PORT` -> (HOST, PORT); ValueError saying what is wrong ("is not `form`", or
    the port's range) unless the host is non-empty and the port a number in 1..MAX_PORT
    (a port out of range is refused here, never retried as an address that cannot exist)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"is not {form}")
    if not 1 <= int(port) <= MAX_PORT:
        raise ValueError(f"has port {int(port)}, outside 1..{MAX_PORT}")
    return host, int(port)


def parse_address(address: str) -> tuple[str, int]:
    """`grpc://HOST:PORT` or `HOST:PORT` -> (HOST, PORT)."""
    rest = address.split("://", 1)[1] if "://" in address else address
    try:
        return split_host_port(rest, "grpc://HOST:PORT")
    except ValueError as e:
        raise ServiceError(f"tf.data service address {address!r} {e} (e.g. grpc://localhost:5050)") from None


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
