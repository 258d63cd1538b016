"""The input cases of `python -m bench.faults --only rules`: hostile or damaged inputs
that must each cost one line or one counted skip, in bounded time, never a traceback,
a hang, unbounded memory or a program run on the user's behalf: a tf.data service
started without saying the network is trusted, a second dispatcher on a taken port,
an EPS named `.jpg` and a JPEG with a mistyped EXIF tag among the photos, a FIFO or
`/dev/zero` given as a predict list or a CSV source, a manifest nested 100000 deep or
of the wrong types, a damaged `.resume.json`, a byte flipped in every training shard.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import time

from bench.faults import Case, last_line, run, start, trainer_args
from bench.faults_rules import BOUNDED_SECONDS, crafted_copy, one_line

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n(/etc/hostname) (r) file pop showpage\n%%EOF\n"


def guarded(*args: str) -> tuple[subprocess.CompletedProcess | None, float]:
    """`python -m ARGS` and its seconds; None when it did not end within BOUNDED_SECONDS."""
    started = time.monotonic()
    try:
        return run(*args, timeout=BOUNDED_SECONDS), time.monotonic() - started
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - started


def shown(result, seconds: float, w: str) -> str:
    if result is None:
        return f"HANG: no answer after {seconds:.0f} s"
    return f"exit {result.returncode} in {seconds:.1f} s: {last_line(result.stderr).replace(w + '/', '')[:150]}"


def service_without_trust(w: str) -> Case:
    case = Case("security: `records.service dispatcher` without --trusted_network",
                "one line saying it listens on every interface unauthenticated; nothing listens")
    result, seconds = guarded("records.service", "dispatcher", "--port", "0")
    case.observed = shown(result, seconds, w)
    case.ok = result is not None and one_line(result, "every network interface") and "listening" not in result.stdout
    return case


def second_dispatcher_on_a_taken_port(w: str) -> Case:
    case = Case("bound: a second dispatcher on the first one's port",
                "one line naming the port; never 'listening' (gRPC shares a taken port)")
    first = start("records.service", "dispatcher", "--port", "0", "--trusted_network")
    try:
        line = first.stdout.readline()
        port = line.rsplit(":", 1)[-1].split()[0] if "listening on" in line else None
        if port is None:
            case.observed = f"the first dispatcher did not start: {line.strip()[:100]}"
            return case
        result, seconds = guarded("records.service", "dispatcher", "--port", port, "--trusted_network")
        case.observed = shown(result, seconds, w)
        case.ok = result is not None and one_line(result, "another process listens on it") \
            and "listening" not in result.stdout
    finally:
        first.kill()
        first.wait(10)
    return case


def mistyped_exif_jpeg() -> bytes:
    from io import BytesIO
    from PIL import Image
    entries = [(0x0112, 3, 1, b"\x06\x00\x00\x00"), (0xA005, 2, 1, b"\x06\x00\x00\x00")]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHI", *e[:3]) + e[3] for e in entries)
    buf = BytesIO()
    Image.new("RGB", (40, 40), (90, 90, 90)).save(
        buf, "JPEG", exif=b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0))
    return buf.getvalue()


def hostile_photos(w: str) -> Case:
    case = Case("security/bound: an EPS named .jpg and a JPEG with a mistyped EXIF tag among the photos",
                "ingest exit 0, counted undecodable; Ghostscript never started")
    src = os.path.join(w, "src-hostile")
    shutil.copytree(os.path.join(w, "src"), src)
    photos = sorted(os.path.join(r, n) for r, _, names in os.walk(src) for n in names if n.endswith(".jpg"))
    with open(photos[0], "wb") as f:
        f.write(EPS)
    with open(photos[1], "wb") as f:
        f.write(mistyped_exif_jpeg())
    shutil.rmtree(os.path.join(w, "bin"), ignore_errors=True)
    os.makedirs(os.path.join(w, "bin"))
    marker = os.path.join(w, "gs-ran")
    gs = os.path.join(w, "bin", "gs")                     # a `gs` first on PATH says if it ran
    with open(gs, "w") as f:
        f.write(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    os.chmod(gs, 0o755)
    out = os.path.join(w, "hostile")
    started = time.monotonic()
    result = run("ingest", "--src", src, "--out", out, "--image_size", "32", "--workers", "2",
                 timeout=BOUNDED_SECONDS * 3, PATH=os.path.join(w, "bin") + os.pathsep + os.environ["PATH"])
    seconds = time.monotonic() - started
    skipped, before = {}, json.load(open(os.path.join(w, "good", "manifest.json"))).get("skipped", {})
    if result.returncode == 0:
        skipped = json.load(open(os.path.join(out, "manifest.json"))).get("skipped", {})
    case.observed = (f"exit {result.returncode} in {seconds:.0f} s; skipped {skipped} (untouched set: {before}); "
                     f"gs {'RAN' if os.path.exists(marker) else 'never ran'}"
                     + ("" if result.returncode == 0 else f": {last_line(result.stderr)[:100]}"))
    case.ok = result.returncode == 0 and not os.path.exists(marker) \
        and skipped.get("undecodable", 0) > before.get("undecodable", 0)
    return case


def stream_inputs(w: str, run_dir: str) -> list[Case]:
    """A FIFO and /dev/zero as predict's @list and as ingest's CSV source."""
    cases = []
    fifo = os.path.join(w, "stream.fifo")
    os.mkfifo(fifo)
    for what, path in (("a FIFO", fifo), ("/dev/zero", "/dev/zero")):
        for command, args in (("predict @LIST", ("serving.predict", f"--model_dir={run_dir}", f"@{path}")),
                              ("ingest --source csv --src", ("ingest", "--source", "csv", "--src", path,
                                                             "--out", os.path.join(w, "from-stream")))):
            case = Case(f"bound: {command} that is {what}", "one line in bounded time; nothing read")
            result, seconds = guarded(*args)
            case.observed = shown(result, seconds, w)
            case.ok = result is not None and one_line(result, "not a regular file") and seconds < BOUNDED_SECONDS
            cases.append(case)
    return cases


def crafted_manifests(w: str, good: str) -> list[Case]:
    cases = []
    deep = os.path.join(w, "deep")
    shutil.copytree(good, deep, ignore=shutil.ignore_patterns("features"))
    with open(os.path.join(deep, "manifest.json"), "w") as f:
        f.write("[" * 100000 + "]" * 100000)
    for command in (("records", "inspect", deep), tuple(trainer_args(deep, os.path.join(w, "runs", "deep"),
                                                                      "--dry_run"))):
        case = Case(f"bound: a manifest nested 100000 deep, then {' '.join(command[:2])}",
                    "one line naming the file; no RecursionError")
        result, seconds = guarded(*command)
        case.observed = shown(result, seconds, w)
        case.ok = result is not None and one_line(result, "nested too deeply")
        cases.append(case)
    for name, edit, says in (("source", lambda m: m.update(source="x"), "source 'x' is not an object"),
                             ("cleaning", lambda m: m.update(cleaning=[{}]), "cleaning step #0"),
                             ("bytes", lambda m: m["splits"]["train"]["shards"][0].update(bytes=10**400),
                              "is not a count")):
        copy = crafted_copy(w, good, f"types-{name}", edit)
        case = Case(f"bound: a manifest with a {name} of the wrong type, then records inspect",
                    "one line naming the field")
        result, seconds = guarded("records", "inspect", copy)
        case.observed = shown(result, seconds, w)
        case.ok = result is not None and one_line(result, says)
        cases.append(case)
    return cases


def damaged_resume_state(w: str) -> Case:
    case = Case("bound: a damaged .resume.json in an interrupted ingest's staging",
                "the rerun starts over, saying the file is damaged; exit 0")
    out = os.path.join(w, "resumed")
    staging = os.path.join(w, ".resumed.staging")
    os.makedirs(staging)
    with open(os.path.join(staging, ".dex-age"), "w") as f:
        f.write('{"kind": "images", "created": "x"}\n')
    with open(os.path.join(staging, ".resume.json"), "w") as f:
        f.write('{"fingerprint": [], "splits": {"train": 5}}')
    result, seconds = guarded("ingest", "--src", os.path.join(w, "src"), "--out", out,
                              "--image_size", "32", "--workers", "2")
    said = next((line for line in (result.stdout if result else "").splitlines() if "is damaged" in line), "")
    case.observed = (shown(result, seconds, w) if result is None or result.returncode
                     else f"exit 0 in {seconds:.0f} s: {said.replace(w + '/', '')[:150]}")
    case.ok = result is not None and result.returncode == 0 and bool(said)
    return case


def flipped_training_shards(w: str, good: str) -> Case:
    case = Case("bound: one byte flipped in every training shard (sizes unchanged), then the trainer",
                "one line naming the shards and `records verify`; no traceback")
    copy = os.path.join(w, "flipped")
    shutil.copytree(good, copy, ignore=shutil.ignore_patterns("features"))
    for shard in json.load(open(os.path.join(copy, "manifest.json")))["splits"]["train"]["shards"]:
        path = os.path.join(copy, shard["file"])
        data = bytearray(open(path, "rb").read())
        data[len(data) // 2] ^= 0xFF
        open(path, "wb").write(bytes(data))
    result, seconds = guarded(*trainer_args(copy, os.path.join(w, "runs", "flipped"), "--epochs=1"))
    case.observed = shown(result, seconds, w)
    case.ok = result is not None and one_line(result, "damaged (a record fails its checksum") \
        and f"records verify {copy}" in result.stderr
    return case


def input_cases(w: str, good: str, run_dir: str) -> list[Case]:
    """Every input case; `run_dir` a trained run (for predict)."""
    return ([service_without_trust(w), second_dispatcher_on_a_taken_port(w), hostile_photos(w)]
            + stream_inputs(w, run_dir) + crafted_manifests(w, good)
            + [damaged_resume_state(w), flipped_training_shards(w, good)])
