"""python -m records.service dispatcher --port 5050 [--work_dir DIR]
python -m records.service worker --dispatcher HOST:5050 [--port P] [--worker_address HOST:P]

Start one tf.data service server and serve until SIGTERM or Ctrl-C, then stop it
cleanly. The dispatcher hands out each epoch's shard files; workers run the input
pipeline (read, shuffle, decode, augment, batch) and stream batches to the trainers
(`python -m trainer --data_service=grpc://HOST:5050`). Workers read the shards from
the same path the trainer names, so every worker host must see the shard directory
there (a shared file system or a copy).

Exit status 0 after the clean stop. A bad address, a port in use or an unusable
--work_dir is one `error: ...` line and exit status 1 (entry.run_parsed); a
malformed address is refused before TensorFlow loads.
"""

from __future__ import annotations

import entry  # first: sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads

import argparse
import os
import signal
import threading

DEFAULT_PORT = 5050
POLL_S = 0.2   # how often the serving loop checks for a stop request


def listen_port(text: str) -> int:
    """--port: 0 (any free port) or 1..MAX_PORT; anything else is argparse's usage error."""
    from records.service.address import MAX_PORT

    if not text.isdigit() or int(text) > MAX_PORT:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0..{MAX_PORT})")
    return int(text)


def parser() -> argparse.ArgumentParser:
    """Every flag of `python -m records.service`, defined here only."""
    p = argparse.ArgumentParser(prog="python -m records.service", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="server", required=True)
    d = sub.add_parser("dispatcher", help="start the dispatcher (one per service)")
    d.add_argument("--port", type=listen_port, default=DEFAULT_PORT,
                   help="port to listen on (0 picks a free one); default %(default)s")
    d.add_argument("--work_dir", default=None,
                   help="directory for the dispatcher's journal; with it fault_tolerant_mode is "
                        "on, so a restarted dispatcher recovers its jobs and workers")
    d.add_argument("--worker_timeout_ms", type=int, default=None,
                   help="how long a worker may miss heartbeats before the dispatcher drops it "
                        "(tf.data's default when unset)")
    w = sub.add_parser("worker", help="start a worker (one or more per host)")
    w.add_argument("--dispatcher", required=True, help="the dispatcher's HOST:PORT (grpc:// optional)")
    w.add_argument("--port", type=listen_port, default=0, help="port to listen on (0 picks a free one)")
    w.add_argument("--worker_address", default=None,
                   help="HOST:PORT by which the dispatcher and trainers reach this worker; "
                        "default localhost:<port> (set it when they run on other hosts)")
    return p


def stop_requested() -> threading.Event:
    """An event set by SIGTERM/SIGINT. Installed before the server starts, so a signal
    that arrives as soon as the address is printed is never missed."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def serve(server, what: str, stop: threading.Event) -> None:
    """Wait until `stop` is set, then `server.stop()`. A blocked `join()` would ignore
    both signals, so this waits on the event in short slices instead."""
    while not stop.wait(POLL_S):
        pass
    server.stop()
    print(f"{what} stopped", flush=True)


def main(args: argparse.Namespace) -> int:
    """Start the server `args` names and serve until SIGTERM/Ctrl-C (then exit status 0).
    A bad address, a taken port or an unusable work dir is a ServiceError: one
    `error: ...` line from entry.run_parsed, exit status 1."""
    from records.service.address import ServiceError, parse_address

    if args.server == "worker":          # before TensorFlow's import and its start-up lines
        host, port = parse_address(args.dispatcher)
        if args.worker_address is not None:
            parse_address(args.worker_address)
    import tensorflow as tf

    stop = stop_requested()
    service = tf.data.experimental.service
    if args.server == "dispatcher":
        if args.work_dir:
            try:
                os.makedirs(args.work_dir, exist_ok=True)
            except OSError as e:
                raise ServiceError(f"--work_dir {args.work_dir}: cannot create it "
                                   f"({e.strerror or e}); pass a writable directory") from None
        config = service.DispatcherConfig(
            port=args.port, work_dir=args.work_dir, fault_tolerant_mode=bool(args.work_dir),
            worker_timeout_ms=args.worker_timeout_ms)
        try:
            server = service.DispatchServer(config)
        except Exception as e:  # the port is taken, the work dir unusable, ...
            raise ServiceError(f"cannot start the dispatcher on port {args.port}: "
                               f"{str(e).splitlines()[0]}") from None
        mode = f", fault tolerant, work_dir {args.work_dir}" if args.work_dir else ""
        print(f"dispatcher listening on {server.target}{mode}", flush=True)
        serve(server, "dispatcher", stop)
        return 0
    config = service.WorkerConfig(
        dispatcher_address=f"{host}:{port}", port=args.port,
        worker_address=args.worker_address or "localhost:%port%")
    try:
        server = service.WorkerServer(config)
    except Exception as e:
        raise ServiceError(f"cannot start the worker on port {args.port}: "
                           f"{str(e).splitlines()[0]}") from None
    print(f"worker listening on {server._address} (reachable as "
          f"{(args.worker_address or 'localhost:%port%').replace('%port%', server._address.rsplit(':', 1)[1])}), "
          f"dispatcher {host}:{port}", flush=True)
    serve(server, "worker", stop)
    return 0


if __name__ == "__main__":
    entry.run_parsed(main, parser())
