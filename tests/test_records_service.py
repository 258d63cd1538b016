"""records.service on loopback: the servers as the project starts them
(`python -m records.service dispatcher|worker`, subprocesses always killed in
teardown), an epoch in which every training record arrives exactly once (counted by
key), a worker killed mid-epoch (the epoch ends or fails in one line within its
bound, the missed records counted), a dead address in one line, and a short
training run through the service. Every wait is bounded."""

from __future__ import annotations

import csv
import itertools
import math
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import tensorflow as tf

from records import service

pytestmark = pytest.mark.slow
HOST = "127.0.0.1"
START_S = 60          # a server prints its address within this (TF import on a busy machine)
_jobs = itertools.count()


class Server:
    """A `python -m records.service ...` subprocess and the address it printed."""

    def __init__(self, *args: str):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        self.proc = subprocess.Popen([sys.executable, "-m", "records.service", *args, "--trusted_network"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.first = self.line(START_S)
        assert "listening on" in self.first, self.first
        self.port = int(re.search(r"listening on \S*?:(\d+)", self.first)[1])

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def line(self, timeout: float) -> str:
        try:
            got = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output within {timeout} s") from None
        if got is None:
            raise AssertionError(f"server exited: {self.proc.wait(5)}: {self.proc.stderr.read()[-2000:]}")
        return got

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def servers():
    """start(*args) -> Server; every server started is killed at teardown."""
    started = []

    def start(*args):
        s = Server(*args)
        started.append(s)
        return s

    yield start
    for s in started:
        s.kill()


def cluster(start, workers: int, *dispatcher_args: str):
    d = start("dispatcher", "--port", "0", *dispatcher_args)
    ws = [start("worker", "--dispatcher", f"{HOST}:{d.port}", "--port", "0") for _ in range(workers)]
    return f"grpc://{HOST}:{d.port}", d, ws


def train_keys(shards) -> list[bytes]:
    import records
    ds = records.make_dataset(shards, "train", 64, training=False, with_keys=True)
    return [k for _, labels in ds for k in labels["key"].numpy()]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- servers

def test_servers_print_their_address_and_stop_on_sigterm(servers, tmp_path):
    d = servers("dispatcher", "--port", "0", "--work_dir", str(tmp_path / "journal"))
    assert "fault tolerant" in d.first and str(tmp_path / "journal") in d.first
    w = servers("worker", "--dispatcher", f"{HOST}:{d.port}", "--port", "0")
    assert f"dispatcher {HOST}:{d.port}" in w.first and "reachable as localhost:" in w.first
    for s, what in ((w, "worker"), (d, "dispatcher")):
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(20) == 0
        assert s.line(5) == f"{what} stopped"
    assert os.listdir(tmp_path / "journal")          # fault-tolerant mode journals there


# --------------------------------------------------------------------------- address

def test_dead_address_is_one_line_not_a_hang(sample_shards):
    port = closed_port()
    t0 = time.monotonic()
    with pytest.raises(service.ServiceError) as e:
        service.distribute(tf.distribute.get_strategy(), f"grpc://{HOST}:{port}", sample_shards,
                           "train", 8, name="dead", epoch=0)
    assert time.monotonic() - t0 < service.CONNECT_TIMEOUT_S + 2
    msg = str(e.value)
    assert "\n" not in msg and f"{HOST}:{port}" in msg and "python -m records.service dispatcher" in msg
    with pytest.raises(service.ServiceError, match="not grpc://HOST:PORT"):
        service.check_address("localhost")


@pytest.mark.parametrize("address, why", [("nohost", "is not grpc://HOST:PORT"),
                                          ("localhost:99999", "has port 99999, outside 1..65535")])
def test_worker_with_a_malformed_dispatcher_address_is_one_line(address, why):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([sys.executable, "-m", "records.service", "worker", "--dispatcher", address,
                        "--trusted_network"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 1, r.stderr                 # entry.run_parsed: one line, status 1
    assert r.stderr.strip() == f"error: tf.data service address {address!r} {why} (e.g. grpc://localhost:5050)"


@pytest.mark.parametrize("text, parsed", [("localhost:1", ("localhost", 1)), ("h:65535", ("h", 65535)),
                                          ("localhost:0", "has port 0, outside 1..65535"),
                                          ("localhost:99999", "has port 99999, outside 1..65535"),
                                          ("localhost", "is not HOST:PORT"), (":5050", "is not HOST:PORT")])
def test_host_port_parsing_bounds_the_port(text, parsed):
    from records.service.address import split_host_port
    if isinstance(parsed, tuple):
        assert split_host_port(text) == parsed
    else:
        with pytest.raises(ValueError, match=f"^{re.escape(parsed)}$"):
            split_host_port(text)



def test_a_dispatcher_on_a_port_in_use_is_one_error_line_and_status_1():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "records.service", "dispatcher", "--port", str(port),
                            "--trusted_network"], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 1, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].startswith(f"error: cannot start the dispatcher on port {port}: ")
    assert "Traceback" not in r.stderr


def test_a_second_dispatcher_on_a_busy_port_is_refused_not_listening(servers):
    """gRPC sets SO_REUSEPORT: without the project's check a second dispatcher on the
    first one's port starts and says it listens."""
    first = servers("dispatcher", "--port", "0")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for server in ("dispatcher", "worker"):
        extra = ["--dispatcher", f"{HOST}:{first.port}"] if server == "worker" else []
        r = subprocess.run([sys.executable, "-m", "records.service", server, "--port", str(first.port),
                            "--trusted_network", *extra], capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 1 and "listening" not in r.stdout, (r.stdout, r.stderr[-2000:])
        assert r.stderr.strip() == (f"error: cannot start the {server} on port {first.port}: another process "
                                    f"listens on it (a {server} already running?); stop it or pass another --port")


@pytest.mark.parametrize("server", ["dispatcher", "worker"])
def test_no_server_starts_without_the_trusted_network_statement(server):
    from records.service.__main__ import UNTRUSTED
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    extra = ["--dispatcher", f"{HOST}:5050"] if server == "worker" else []
    r = subprocess.run([sys.executable, "-m", "records.service", server, "--port", "0", *extra],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip() == f"error: {server}: not started: {UNTRUSTED}"
    assert "every network interface" in UNTRUSTED and "any input graph" in UNTRUSTED

# --------------------------------------------------------------------------- epochs

def test_run_name_is_new_for_every_attempt():
    a, b = (service.run_name(tf.distribute.get_strategy(), "runs-x") for _ in range(2))
    assert a != b and a.startswith("runs-x-") and b.startswith("runs-x-")
    assert service.job_name(a, 3) == f"{a}-epoch00003"


def test_each_epoch_delivers_every_training_record_exactly_once(servers, sample_shards):
    address, _, _ = cluster(servers, 2)
    truth = train_keys(sample_shards)
    assert len(truth) == len(set(truth)) > 100
    name = f"exact{next(_jobs)}"
    for epoch in range(2):        # one job per epoch: the second epoch is whole again
        data = service.distribute(tf.distribute.get_strategy(), address, sample_shards, "train",
                                  16, name=name, epoch=epoch, seed=epoch, with_keys=True)
        keys: dict = {}
        report = service.run_epoch(service.count_records(iter(data), keys), len(truth), 120)
        assert report.missed == 0 and report.seen == len(truth), str(report)
        assert sorted(keys) == sorted(truth) and set(keys.values()) == {1}


MIRRORED_CONSUMER = textwrap.dedent("""
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from records import service
    address, shards, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    data = service.distribute(strategy, address, shards, "train", 16,
                              name=service.run_name(strategy, "mirrored"), epoch=0, with_keys=True)
    keys = {}
    report = service.run_epoch(service.count_records(iter(data), keys), expected, 120)
    print(f"REPLICAS {strategy.num_replicas_in_sync} seen={report.seen} unique={len(keys)} "
          f"most={max(keys.values())}", flush=True)
""")


def test_every_replica_of_a_mirrored_strategy_reads_the_same_epoch(servers, sample_shards):
    address, _, _ = cluster(servers, 2)
    expected = len(train_keys(sample_shards))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([sys.executable, "-c", MIRRORED_CONSUMER, address, sample_shards, str(expected)],
                       capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == f"REPLICAS 2 seen={expected} unique={expected} most=1"


KILL_CONSUMER = textwrap.dedent("""
    import sys, time
    import tensorflow as tf
    from records import service
    address, shards, expected, deadline, flag = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
    data = service.distribute(tf.distribute.get_strategy(), address, shards, "train", 4,
                              name="killed", epoch=0, shuffle_buffer=8, with_keys=True)
    keys, batches = {}, [0]
    count = service.count_records(iter(data), keys)
    def slow_step():
        n = count()
        batches[0] += 1
        if batches[0] == 1:
            open(flag, "w").close()        # the test kills a worker now
        time.sleep(0.1)
        return n
    try:
        report = service.run_epoch(slow_step, expected, deadline)
    except service.EpochTimeout as e:
        print(f"error: {e}", flush=True)
        import os; os._exit(3)            # a step is still blocked inside tf.data service
    print(f"REPORT seen={report.seen} missed={report.missed} unique={len(keys)} "
          f"most={max(keys.values())} {report}", flush=True)
""")


def test_a_worker_killed_mid_epoch_ends_the_epoch_within_the_bound_and_counts_the_loss(
        servers, sample_shards, tmp_path):
    # The dispatcher drops a silent worker after 2 s, so a lost worker ends its tasks.
    address, _, workers = cluster(servers, 2, "--worker_timeout_ms", "2000")
    expected = len(train_keys(sample_shards))
    deadline, flag = 30.0, tmp_path / "kill-now"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    consumer = subprocess.Popen([sys.executable, "-c", KILL_CONSUMER, address, sample_shards,
                                 str(expected), str(deadline), str(flag)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for _ in range(1200):                # bounded: 120 s
            if flag.exists() or consumer.poll() is not None:
                break
            time.sleep(0.1)
        assert flag.exists(), consumer.communicate(timeout=10)
        workers[1].kill()
        killed = time.monotonic()
        out, err = consumer.communicate(timeout=deadline + 60)
        after_kill = time.monotonic() - killed
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait(10)
    lines = out.strip().splitlines()
    assert len(lines) == 1, (out, err[-2000:])
    if consumer.returncode == 0:     # the epoch ended: what arrived plus what was missed is the split
        # (A worker killed after its records reached the consumer's buffers loses nothing.)
        m = re.match(r"REPORT seen=(\d+) missed=(\d+) unique=(\d+) most=(\d+) ", lines[0])
        assert m, lines
        seen, missed, unique, most = map(int, m.groups())
        assert seen == unique and most == 1 and seen + missed == expected, lines[0]
        assert (f"; {missed} missed" in lines[0]) == (missed > 0), lines[0]
    else:                            # the epoch blocked: it failed at the deadline, in one line
        assert consumer.returncode == 3, (out, err[-2000:])
        assert lines[0].startswith("error: epoch did not end within 30 s: ")
        assert re.search(r"(\d+) of %d records arrived \((\d+) missing\)" % expected, lines[0])
    # The epoch's deadline started before the kill: the consumer is done within it (+ exit).
    assert after_kill < deadline + 10, after_kill


# --------------------------------------------------------------------------- training

def test_a_short_training_run_through_the_service(servers, sample_shards):
    import keras

    import model
    from trainer import loop

    address, _, _ = cluster(servers, 2)
    expected = len(train_keys(sample_shards))
    strategy = tf.distribute.get_strategy()
    loop.set_seeds(0)
    net = model.build_age_model(None, variant="tiny")
    trainer = loop.Loop(strategy, net, keras.optimizers.Adam(1e-3), global_batch_size=16,
                        with_gender=False)
    name, losses = service.run_name(strategy, "train"), []
    for epoch in range(2):
        iterator = iter(service.distribute(strategy, address, sample_shards, "train", 16,
                                           name=name, epoch=epoch, seed=0))
        totals: dict = {}

        def step():
            sums = trainer.train(iterator, 1)
            for k, v in sums.items():
                totals[k] = totals.get(k, 0.0) + v
            return int(sums["count"])

        report = service.run_epoch(step, expected, 180)
        assert report.missed == 0 and totals["count"] == expected, str(report)
        losses.append(loop.metrics(totals)["loss"])
    assert all(math.isfinite(v) for v in losses)
    # One optimizer step per batch; each of the 2 workers may end its share with a partial batch.
    steps, full = int(trainer.optimizer.iterations.numpy()), -(-expected // 16)
    assert 2 * full <= steps <= 2 * (full + 1), (steps, expected)


# --------------------------------------------------------------------------- trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def trainer(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "trainer", f"--flagfile={REPO}/cpu.flags", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_trainer_trains_through_the_service(servers, sample_shards, tmp_path):
    address, _, _ = cluster(servers, 2)
    run_dir = tmp_path / "run"
    r = trainer(f"--records={sample_shards}", f"--model_dir={run_dir}", "--epochs=2",
                "--batch_size=16", f"--data_service={address}", "--data_service_deadline=120",
                "--noevaluate")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    with open(run_dir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["epoch"]) for row in rows] == [1, 2]
    assert all(math.isfinite(float(row["loss"])) and math.isfinite(float(row["val_mae"])) for row in rows)
    assert "missed" not in r.stdout          # no worker was lost: every record arrived
    assert (run_dir / "best.keras").exists()


def test_trainer_epoch_that_cannot_end_fails_in_one_line_at_its_deadline(servers, sample_shards, tmp_path):
    # A dispatcher without workers: the epoch's job never yields, as when every worker
    # holding its files is lost. The trainer must stop at --data_service_deadline.
    d = servers("dispatcher", "--port", "0")
    t0 = time.monotonic()
    r = trainer(f"--records={sample_shards}", f"--model_dir={tmp_path / 'stuck'}", "--epochs=1",
                "--batch_size=16", f"--data_service=grpc://{HOST}:{d.port}",
                "--data_service_deadline=15", "--noevaluate", timeout=150)
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].startswith(
        "error: epoch 1 did not end within 15 s: 0 of "), r.stderr[-1500:]
    assert time.monotonic() - t0 < 120


@pytest.mark.parametrize("args, message", [
    (["--data_service=nohost"], "error: --data_service: tf.data service address 'nohost' is not grpc://HOST:PORT"),
    (["--data_service=grpc://127.0.0.1:5050", "--steps_per_epoch=3"],
     "error: --steps_per_epoch=3 with --data_service: an epoch on the service is one pass"),
])
def test_trainer_refuses_bad_service_flags_in_one_line(args, message, sample_shards, tmp_path):
    r = trainer(f"--records={sample_shards}", f"--model_dir={tmp_path / 'bad'}", *args, timeout=120)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1].startswith(message), r.stderr[-1500:]
    assert not (tmp_path / "bad").exists()


def test_trainer_refuses_several_records_sources_with_the_service(sample_shards, tmp_path):
    r = trainer(f"--records={sample_shards},{sample_shards}", f"--model_dir={tmp_path / 'bad'}",
                "--data_service=grpc://127.0.0.1:5050", timeout=120)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --records=") and "with --data_service" in last, r.stderr[-1500:]


def test_trainer_with_a_dead_dispatcher_fails_in_one_line_before_building(sample_shards, tmp_path):
    port = closed_port()
    t0 = time.monotonic()
    r = trainer(f"--records={sample_shards}", f"--model_dir={tmp_path / 'dead'}",
                f"--data_service=grpc://{HOST}:{port}", timeout=120)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: --data_service=grpc://{HOST}:{port}: no tf.data service dispatcher "
                           f"at {HOST}:{port}"), r.stderr[-1500:]
    assert not (tmp_path / "dead").exists()          # nothing was built
    assert time.monotonic() - t0 < 100
