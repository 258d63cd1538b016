"""python -m records.service dispatcher --trusted_network --port 5050 [--work_dir DIR]
python -m records.service worker --trusted_network --dispatcher HOST:5050 [--port P] [--worker_address HOST:P]

Start one tf.data service server and serve until SIGTERM or Ctrl-C, then stop it
cleanly. The dispatcher hands out each epoch's shard files; workers run the input
pipeline (read, shuffle, decode, augment, batch) and stream batches to the trainers
(`python -m trainer --data_service=grpc://HOST:5050`). Workers read the shards from
the same path the trainer names, so every worker host must see the shard directory
there (a shared file system or a copy).

Trusted network only: TensorFlow's tf.data servers listen on every network
interface (they cannot be bound to 127.0.0.1 or any one address), without
authentication or encryption, and a worker runs whatever input graph a client sends
it: any program TensorFlow's ops can express, reading and writing files as the user
who started the worker.  So neither server starts without --trusted_network, the
user's statement that every host that can reach these ports is trusted (a private
cluster network, or a firewall that admits only the trainer and worker hosts).

Exit status 0 after the clean stop. No --trusted_network, a bad address, a port in
use (another process listens on it) or an unusable --work_dir is one `error: ...`
line and exit status 1 (entry.run), all but the work dir before TensorFlow loads.
"""

from __future__ import annotations

import entry  # first: sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads

import os
import signal
import threading

from absl import flags

DEFAULT_PORT = 5050           # the dispatcher's --port (a worker's: 0, any free port)
POLL_S = 0.2   # how often the serving loop checks for a stop request
SERVERS = ("dispatcher", "worker")
USAGE = ("python -m records.service dispatcher --trusted_network [--port P] [--work_dir DIR] "
         "[--worker_timeout_ms MS] | python -m records.service worker --trusted_network --dispatcher HOST:PORT "
         "[--port P] [--worker_address HOST:P]")
UNTRUSTED = ("TensorFlow's tf.data service listens on every network interface (it cannot be bound to "
             "127.0.0.1), without authentication, and its workers run any input graph a client sends "
             "(reading and writing files as this user); start it only on a network where every host that "
             "can reach it is trusted, and say so with --trusted_network")
FLAGS = flags.FLAGS
OWN_FLAGS = {"dispatcher": ("work_dir", "worker_timeout_ms"), "worker": ("dispatcher", "worker_address")}


def define_flags() -> None:
    """Every flag of `python -m records.service`, defined here only."""
    flags.DEFINE_bool("trusted_network", False, "required: every host that can reach this server's port "
                      "is trusted (it listens on all interfaces, unauthenticated, and a worker runs any "
                      "graph a client sends); see README, 'Trusted network only'")
    flags.DEFINE_integer("port", None, f"port to listen on (0 picks a free one); default {DEFAULT_PORT} "
                         f"for the dispatcher, 0 for a worker")
    flags.DEFINE_string("work_dir", None, "dispatcher: directory for its journal; with it fault_tolerant_mode "
                        "is on, so a restarted dispatcher recovers its jobs and workers")
    flags.DEFINE_integer("worker_timeout_ms", None, "dispatcher: how long a worker may miss heartbeats before "
                         "the dispatcher drops it (tf.data's default when unset)")
    flags.DEFINE_string("dispatcher", None, "worker: the dispatcher's HOST:PORT (grpc:// optional)")
    flags.DEFINE_string("worker_address", None, "worker: HOST:PORT by which the dispatcher and trainers reach "
                        "this worker; default localhost:<port> (set it when they run on other hosts)")


def server_and_port(argv: list[str]) -> tuple[str, int]:
    """The server to start (dispatcher or worker) and its port, from the arguments after
    the flags; a wrong one, a port outside 0..MAX_PORT, a worker without --dispatcher or
    the other server's flag is a ServiceError line."""
    from records.service.address import MAX_PORT, ServiceError, port_in_use

    args = argv[1:]
    if len(args) != 1 or args[0] not in SERVERS:
        raise ServiceError(f"usage: {USAGE} (got: {' '.join(args) or 'no arguments'})")
    server = args[0]
    other = next(name for name in OWN_FLAGS if name != server)
    for name in OWN_FLAGS[other]:
        if FLAGS[name].present:
            raise ServiceError(f"--{name} is the {other}'s flag, not the {server}'s: {USAGE}")
    if server == "worker" and FLAGS.dispatcher is None:
        raise ServiceError("a worker needs --dispatcher HOST:PORT (the dispatcher's address)")
    port = FLAGS.port if FLAGS.port is not None else (DEFAULT_PORT if server == "dispatcher" else 0)
    if not 0 <= port <= MAX_PORT:
        raise ServiceError(f"--port={port} is not a port (0..{MAX_PORT})")
    if not FLAGS.trusted_network:
        raise ServiceError(f"{server}: not started: {UNTRUSTED}")
    if port_in_use(port):
        raise ServiceError(f"cannot start the {server} on port {port}: another process listens on it "
                           f"(a {server} already running?); stop it or pass another --port")
    return server, port


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


def main(argv: list[str]) -> int:
    """Start the server `argv` names and serve until SIGTERM/Ctrl-C (then exit status 0).
    A bad address, a taken port or an unusable work dir is a ServiceError: one
    `error: ...` line from entry.run, exit status 1."""
    from records.service.address import ServiceError, parse_address

    server_name, listen = server_and_port(argv)
    work_dir, worker_address = FLAGS.work_dir, FLAGS.worker_address
    if server_name == "worker":          # before TensorFlow's import and its start-up lines
        host, port = parse_address(FLAGS.dispatcher)
        if worker_address is not None:
            parse_address(worker_address)
    import tensorflow as tf

    stop = stop_requested()
    service = tf.data.experimental.service
    if server_name == "dispatcher":
        if work_dir:
            try:
                os.makedirs(work_dir, exist_ok=True)
            except OSError as e:
                raise ServiceError(f"--work_dir {work_dir}: cannot create it "
                                   f"({e.strerror or e}); pass a writable directory") from None
        config = service.DispatcherConfig(
            port=listen, work_dir=work_dir, fault_tolerant_mode=bool(work_dir),
            worker_timeout_ms=FLAGS.worker_timeout_ms)
        try:
            server = service.DispatchServer(config)
        except Exception as e:  # the port is taken, the work dir unusable, ...
            raise ServiceError(f"cannot start the dispatcher on port {listen}: "
                               f"{str(e).splitlines()[0]}") from None
        mode = f", fault tolerant, work_dir {work_dir}" if work_dir else ""
        print(f"dispatcher listening on {server.target}{mode}", flush=True)
        serve(server, "dispatcher", stop)
        return 0
    config = service.WorkerConfig(
        dispatcher_address=f"{host}:{port}", port=listen,
        worker_address=worker_address or "localhost:%port%")
    try:
        server = service.WorkerServer(config)
    except Exception as e:
        raise ServiceError(f"cannot start the worker on port {listen}: "
                           f"{str(e).splitlines()[0]}") from None
    print(f"worker listening on {server._address} (reachable as "
          f"{(worker_address or 'localhost:%port%').replace('%port%', server._address.rsplit(':', 1)[1])}), "
          f"dispatcher {host}:{port}", flush=True)
    serve(server, "worker", stop)
    return 0


if __name__ == "__main__":
    entry.run(main, define_flags)
