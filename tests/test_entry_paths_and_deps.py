"""A missing path is named with the one a typo away (errors.paths), and a command
run where the project's dependencies are not importable says so in one line
(entry._deps) before importing any of them."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

import pytest

from entry import _deps
from errors.paths import edits, missing, nearest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = ("ingest", "ingest.sample", "trainer", "trainer.evaluate", "trainer.features", "trainer.predict",
            "trainer.export", "serving.predict", "serving.export", "records", "records.service")


def test_edits_counts_insertions_deletions_and_substitutions_up_to_the_limit():
    assert edits("smal-utk", "small-utk") == 1
    assert edits("small-utx", "small-utk") == 1
    assert edits("wikk", "wiki") == 1 and edits("wki", "wiki") == 1
    assert edits("abc", "xyz") == 3 and edits("abcdef", "xyz") == 3   # past the limit: limit + 1
    assert edits("same", "same") == 0


def test_a_missing_path_names_the_one_a_typo_away(tmp_path, monkeypatch):
    (tmp_path / "runs" / "small-utk").mkdir(parents=True)
    (tmp_path / "runs" / "big-wiki").mkdir()
    (tmp_path / "shards" / "wiki").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert missing("runs/smal-utk") == "runs/smal-utk does not exist; did you mean runs/small-utk?"
    assert missing("rusn/small-utk") == "rusn/small-utk does not exist; did you mean runs/small-utk?"
    assert nearest("shrads/wik") == "shards/wiki"                    # a typo in each name
    assert missing("runs/other", "train one") == "runs/other does not exist; train one"
    assert missing("runs/other") == "runs/other does not exist"
    assert nearest("nothing/at/all") is None
    assert missing(str(tmp_path / "runs" / "smll-ut")) == (
        f"{tmp_path / 'runs' / 'smll-ut'} does not exist; did you mean {tmp_path / 'runs' / 'small-utk'}?")


def test_the_guard_knows_every_dependency_of_pyproject():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        declared = tomllib.load(f)["project"]["dependencies"]
    names = {d.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip() for d in declared}
    assert set(_deps.MODULES) == names
    assert _deps.missing_module() is None                            # this environment has them all


def test_a_missing_dependency_is_one_line_naming_it_and_the_fix(monkeypatch, capsys):
    monkeypatch.setitem(_deps.MODULES, "absl-py", "absl_not_installed_here")
    with pytest.raises(SystemExit) as e:
        _deps.require()
    assert str(e.value) == ("error: the project's dependencies are not importable here (No module named "
                            "'absl_not_installed_here'); run make install, then source .venv/bin/activate")


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_without_the_dependencies_says_how_to_get_them(command):
    # -S: no site-packages (where the dependencies are installed); the project from PYTHONPATH.
    result = subprocess.run([sys.executable, "-S", "-m", command, "--help"], cwd=REPO, capture_output=True,
                            text=True, timeout=60, env={"PATH": os.environ["PATH"], "PYTHONPATH": REPO})
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: the project's dependencies are not importable here (No module named 'absl'); run make install, "
        "then source .venv/bin/activate"], result.stderr
