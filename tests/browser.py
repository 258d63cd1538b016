"""Opening a page this project writes in a real browser: headless Chromium (Debian's
`chromium` package; .ci/run installs it where missing) screenshots it at a laptop's and
a phone's width and dumps its DOM, so a test sees what a person would."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
WINDOWS = {"laptop": (1280, 2400), "phone": (390, 2400)}
INSTALL = "apt-get install -y chromium"


def chromium() -> str:
    """The browser's path; without one the test fails saying how to install it."""
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    pytest.fail(f"no browser to open the page: none of {', '.join(BROWSERS)} is on PATH; "
                f"install Debian's Chromium (`{INSTALL}`, as .ci/run does) and rerun", pytrace=False)


def _run(args: list[str], url: str) -> subprocess.CompletedProcess:
    return subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--no-first-run", "--disable-extensions", *args, url],
                          capture_output=True, text=True, timeout=120)


def screenshot(path: str, png: str, size: tuple[int, int]) -> np.ndarray:
    """The page at `path` as the browser draws it in a window of `size`, as RGB pixels."""
    result = _run([f"--screenshot={png}", f"--window-size={size[0]},{size[1]}"], "file://" + os.path.abspath(path))
    assert os.path.exists(png), result.stderr[-2000:]
    return np.asarray(Image.open(png).convert("RGB"))


def dom(path: str) -> str:
    """The page's DOM after loading, serialized."""
    result = _run(["--dump-dom"], "file://" + os.path.abspath(path))
    assert result.returncode == 0 and "<html" in result.stdout, result.stderr[-2000:]
    return result.stdout


def check_page(path: str, section_ids, shots_dir: str) -> dict[str, np.ndarray]:
    """Asserts what a reader needs: the file is self-contained (no network address), every
    section is in the browser's DOM, every picture is an inline PNG that decodes, and the
    page draws at a laptop's and a phone's width (screenshot of the window's size, not
    blank).  Returns the screenshots by window name."""
    source = open(path, encoding="utf-8").read()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", source), "the page loads something from the network"
    page = dom(path)
    for sid in section_ids:
        assert re.search(rf"""id=["']?{re.escape(sid)}["' >]""", page), f"section {sid!r} missing from the DOM"
    sources = re.findall(r"""<img[^>]*\ssrc=["']([^"']*)["']""", page)
    assert sources, "no pictures in the page"
    for src in sources:
        assert src.startswith("data:image/png;base64,"), src[:60]
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        image.load()
        assert min(image.size) > 8
    shots = {}
    for name, size in WINDOWS.items():
        pixels = screenshot(path, os.path.join(shots_dir, f"{name}.png"), size)
        assert pixels.shape == (size[1], size[0], 3)
        assert pixels.std() > 20, f"the {name} screenshot is blank"
        shots[name] = pixels
    return shots
