"""Every fix a message suggests names flags that exist on the command it names: a bare
`--flag` is the message's own command's, one inside `python -m X ...` is X's.  The
commands' flags come from their own definitions (absl define functions, argparse
parsers); the messages from the code (every string constant of the packages) and from
the checks themselves, triggered on the wrong kind of path."""

from __future__ import annotations

import argparse
import ast
import json
import os
import re

import pytest
from absl import flags

from storage import outdir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("errors", "entry", "storage", "faces", "records", "model", "reports", "ingest", "trainer", "serving")
ABSL_OWN = {"flagfile", "help", "helpfull", "helpshort", "helpxml", "verbosity", "v", "only_check_args"}
# Files copied out of the project as programs of their own, with their own flags (the
# phone bundle's reference.py): no project command's flags apply to them.
STANDALONE = {"serving/bundle_reference.py"}
WORDS = {"flag", "flags"}           # "every option is a --flag": the word, not a flag
COMMAND = re.compile(r"python -m ([a-z_.]+)(?: (inspect|verify|dispatcher|worker)\b)?")
FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9_]*)")


def _absl_flags(define) -> set[str]:
    """The flags `define` adds to absl's FLAGS (removed again afterwards)."""
    before = set(flags.FLAGS)
    define()
    added = set(flags.FLAGS) - before
    for name in added:
        delattr(flags.FLAGS, name)
    return added | ABSL_OWN


def _argparse_flags(parser: argparse.ArgumentParser) -> dict[str | None, set[str]]:
    """{subcommand (None: the parser itself): its --flags}."""
    def options(p):
        return {o[2:] for o in p._option_string_actions if o.startswith("--")}

    out = {None: options(parser)}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            out.update({name: options(sub) for name, sub in action.choices.items()})
    return out


@pytest.fixture(scope="module")
def command_flags() -> dict[str, set[str]]:
    """{`python -m` command (with its subcommand): the --flags it takes}."""
    from ingest import flags as ingest_flags
    from ingest import sample
    from records import __main__ as records_main
    from records.service import __main__ as service_main
    from bench import peers
    from serving import flags as serving_flags
    from serving import ship
    from trainer import flags as trainer_flags

    table = {"ingest": _absl_flags(ingest_flags.define_flags),
             "trainer": _absl_flags(trainer_flags.define_train_flags),
             "trainer.evaluate": _absl_flags(trainer_flags.define_evaluate_flags),
             "trainer.features": _absl_flags(trainer_flags.define_features_flags),
             "serving.predict": _absl_flags(serving_flags.define_predict_flags),
             "serving.export": _absl_flags(serving_flags.define_export_flags)}
    table["trainer.predict"], table["trainer.export"] = table["serving.predict"], table["serving.export"]
    table["ingest.sample"] = _argparse_flags(sample.parser())[None]
    table["serving.ship"] = _absl_flags(ship.define_flags)
    table["bench.peers"] = _argparse_flags(peers.parser())[None]
    for name, define, subs in (("records", records_main.define_flags, records_main.COMMANDS),
                               ("records.service", service_main.define_flags, ("dispatcher", "worker"))):
        names = _absl_flags(define)
        table[name] = names
        table.update({f"{name} {sub}": names for sub in subs})
    return table


def named_flags(text: str, own: str | None) -> list[tuple[str | None, str]]:
    """(command, flag) for every --flag `text` names: inside a `python -m X ...` command
    line (up to the next backtick, ';', ')' or the end), X's; elsewhere `own`'s."""
    found, spans = [], []
    for m in COMMAND.finditer(text):
        end = min([i for i in (text.find(c, m.end()) for c in "`;)\n") if i >= 0] or [len(text)])
        command = m.group(1) + (f" {m.group(2)}" if m.group(2) else "")
        found += [(command, f) for f in FLAG.findall(text[m.end():end])]
        spans.append((m.start(), end))
    for m in FLAG.finditer(text):
        if not any(a <= m.start() < b for a, b in spans):
            found.append((own, m.group(1)))
    return [(c, f) for c, f in found if f not in WORDS]


def problems(found, command_flags) -> list[str]:
    """Each (command, flag) whose command does not take the flag (own None: any command)."""
    def takes(names, flag):
        return flag in names or (flag.startswith("no") and flag[2:] in names)   # absl's --noFLAG

    every = set().union(*command_flags.values())
    out = []
    for command, flag in found:
        if command is None:
            if not takes(every, flag):
                out.append(f"--{flag} (no command takes it)")
        elif command not in command_flags:
            out.append(f"python -m {command} (no such command)")
        elif not takes(command_flags[command], flag):
            out.append(f"--{flag} (python -m {command} has no such flag)")
    return out


def test_named_flags_reads_bare_flags_as_the_own_commands_and_command_lines_as_theirs():
    text = ("x is a shard file; pass --records x (run `python -m records inspect x --html`); "
            "or python -m trainer --model_dir runs/a --noresume, every option is a --flag")
    assert named_flags(text, "records inspect") == [("records inspect", "html"), ("trainer", "model_dir"),
                                                   ("trainer", "noresume"), ("records inspect", "records")]


def string_constants(path: str) -> list[str]:
    """Every string constant of a Python file, an f-string's literal parts joined."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            out.append("".join(v.value if isinstance(v, ast.Constant) else "X" for v in node.values))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append(node.value)
    return out


def test_every_flag_the_code_names_exists_and_every_command_line_it_shows_is_right(command_flags):
    found = []
    for package in PACKAGES:
        for root, _, files in os.walk(os.path.join(REPO, package)):
            for name in sorted(files):
                path = os.path.join(root, name)
                if name.endswith(".py") and os.path.relpath(path, REPO) not in STANDALONE:
                    found += [(os.path.relpath(path, REPO), p) for text in string_constants(path)
                              for p in problems(named_flags(text, None), command_flags)]
    assert not found, found


def _message(call) -> str:
    with pytest.raises(Exception) as e:
        call()
    return str(e.value)


def _situations(tmp_path):
    """(the command whose check speaks, a call that raises its message), a path of each wrong kind."""
    from records import __main__ as records_main
    from records.manifest import check_split, read_manifest
    from serving.output import check_destinations
    from storage.run_dir import check_run

    shards = tmp_path / "shards" / "x"
    outdir.drop_marker(str(shards), "images")
    (shards / "manifest.json").write_text(json.dumps({"splits": {"train": {}, "test": {}}}))
    shard = shards / "train-00000-of-00001.tfrecord"
    shard.write_bytes(b"")
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"jpeg")
    table = tmp_path / "faces.csv"
    table.write_text("path,age\n")
    run = tmp_path / "runs" / "small-utk"
    outdir.drop_marker(str(run), "run")
    (run / "run.json").write_text(json.dumps({"records": str(shards)}))
    wrong = [shard, photos, table, run, tmp_path / "shards" / "y"]

    def records_command(command, path):
        return lambda: records_main.main(["python -m records", command, str(path)])

    out = [(f"records {c}", records_command(c, p)) for c in ("inspect", "verify") for p in wrong]
    out += [(c, lambda p=p: read_manifest(str(p))) for c in ("trainer", "trainer.evaluate", "trainer.features")
            for p in wrong]
    out += [(c, lambda p=p: check_run(str(p))) for c in ("trainer.evaluate", "serving.predict", "serving.export")
            for p in (shards, photos, table, tmp_path / "runs" / "small-utx", tmp_path / "nowhere")]
    out += [("trainer.evaluate", lambda: check_split(str(shards), {"splits": {"train": {}}}, "testing"))]
    out += [("serving.predict", lambda: check_destinations(str(photos), None)),
            ("serving.predict", lambda: check_destinations(None, str(tmp_path / "p.jsonl"))),
            ("serving.predict", lambda: check_destinations(None, str(table)))]
    return out


def test_each_checks_fix_names_flags_of_its_own_command(command_flags, tmp_path):
    found = []
    for command, call in _situations(tmp_path):
        message = _message(call)
        found += [f"{command}: {p} in {message!r}" for p in problems(named_flags(message, command), command_flags)]
    assert not found, found


def test_a_shard_file_given_to_records_inspect_is_answered_in_records_inspects_own_syntax(tmp_path):
    from records import __main__ as records_main

    shards = tmp_path / "x"
    outdir.drop_marker(str(shards), "images")
    (shards / "manifest.json").write_text("{}")
    shard = shards / "train-00000-of-00001.tfrecord"
    shard.write_bytes(b"")
    message = _message(lambda: records_main.main(["python -m records", "inspect", str(shard)]))
    assert message == (f"{shard} is a shard file of the data set {shards}; run `python -m records inspect "
                       f"{shards}` (the data set's folder)")
