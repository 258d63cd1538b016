"""README's quick start, run as a newcomer runs it: the ```sh block under "## Quick
start" is read from README.md (never copied here) and run line by line with `bash -e`
in a copy of the project, in a shell whose PATH holds no virtualenv.  The copy shares
this checkout's `.venv` (older `pyproject.toml`, so `make install` finds it installed
instead of spending minutes on a second one)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def quick_start_commands(readme: str) -> list[str]:
    """The command lines of the first ```sh block after the "## Quick start" heading,
    comments and blank lines dropped."""
    section = readme.split("\n## Quick start\n", 1)
    if len(section) != 2:
        raise AssertionError("README.md has no '## Quick start' section")
    block = re.search(r"^```sh\n(.*?)^```", section[1].split("\n## ", 1)[0], re.S | re.M)
    if block is None:
        raise AssertionError("README.md's quick start has no ```sh block")
    lines = [line.split("  #", 1)[0].rstrip() for line in block.group(1).splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_the_quick_start_block_is_found_and_starts_with_the_install():
    commands = quick_start_commands(open(os.path.join(REPO, "README.md")).read())
    assert commands[:2] == ["make install", "source .venv/bin/activate"]
    assert len(commands) >= 5 and all(c.startswith("python -m ") for c in commands[2:]), commands
    with pytest.raises(AssertionError, match="no '## Quick start'"):
        quick_start_commands("# title\n\n## Usage\n```sh\nls\n```\n")


def tracked_copy(dest: str) -> None:
    """The files git tracks, with their modification times (make compares them)."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, names.decode().split("\0")):
        target = os.path.join(dest, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.join(REPO, name), target)


@pytest.mark.slow
def test_readme_quick_start_runs_as_written_in_a_shell_without_a_virtualenv(tmp_path):
    venv = os.path.join(REPO, ".venv")
    installed = os.path.join(venv, ".installed")
    assert os.path.isfile(installed), "make install first (make test does)"
    commands = quick_start_commands(open(os.path.join(REPO, "README.md")).read())
    work = str(tmp_path / "dex-age")
    tracked_copy(work)
    os.symlink(venv, os.path.join(work, ".venv"))
    stamp = os.stat(installed).st_mtime
    os.utime(os.path.join(work, "pyproject.toml"), (stamp - 60, stamp - 60))

    # A fresh login shell: no virtualenv on PATH, nothing of this process's Python.
    base_python = os.path.dirname(os.path.realpath(sys._base_executable))
    env = {"PATH": os.pathsep.join([base_python, "/usr/local/bin", "/usr/bin", "/bin"]),
           "HOME": str(tmp_path), "LANG": "C.UTF-8", "TF_CPP_MIN_LOG_LEVEL": "2"}
    assert subprocess.run(["bash", "-c", "python -c 'import absl'"], env=env, cwd=work,
                          capture_output=True).returncode != 0, "the bare shell must not reach the venv"
    script = "set -e\n" + "\n".join(commands) + "\n"
    result = subprocess.run(["bash", "-e", "-c", script], env=env, cwd=work, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    # What the commands promise: the data set, the run with its report, the ages, the export.
    manifest = json.load(open(os.path.join(work, "demo/shards/wiki/manifest.json")))
    assert manifest["image_size"] == 32 and manifest["kept"] > 1000
    report = json.load(open(os.path.join(work, "runs/demo/report.json")))
    assert report["mae"] < report["baseline_mae_predicting_train_mean"] / 2
    ages = [line for line in result.stdout.splitlines() if "apparent age" in line]
    assert len(ages) >= 20, result.stdout[-2000:]
    assert os.path.isfile(os.path.join(work, "exports/demo/model.tflite"))
    assert json.load(open(os.path.join(work, "exports/demo/export.json")))["tflite"] == "float16"
