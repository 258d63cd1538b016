"""Network addresses: `HOST:PORT` parsing (the one parser: tf.data service addresses
here, TF_CONFIG's cluster in trainer.distribution), a TCP connect with a deadline, and
whether a port is free to listen on.
No TensorFlow import, so the server commands reject a bad address in one line, at once."""

from __future__ import annotations

import errno
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
            f"start one with `python -m records.service dispatcher --trusted_network --port {port}` "
            f"or fix the address") from None
    return f"grpc://{host}:{port}"


def port_in_use(port: int) -> bool:
    """Whether another process listens on TCP `port` (any interface, IPv4 or IPv6).
    gRPC sets SO_REUSEPORT, so a second tf.data server on a taken port starts and says
    it listens while the first one answers; this bind, without SO_REUSEPORT, fails on
    any port someone listens on.  Port 0 (any free one) is never in use."""
    if port == 0:
        return False
    for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                probe.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return True
            # no IPv6 on this host, or no permission for a low port: the server says so itself
    return False
