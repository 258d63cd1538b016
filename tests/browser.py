"""Opening a page this project writes in a real browser: headless Chromium (Debian's
`chromium` package; .ci/run installs it where missing) screenshots it at a laptop's and
a phone's width and dumps its DOM, so a test sees what a person would."""

from __future__ import annotations

import base64
import html
import io
import json
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


# Run in the page after it loads: the window's width, the document's, every element whose
# right edge passes the window, every box that scrolls sideways (content hidden behind
# its scrollbar), and the box of each figure caption's text (a Range's box
# holds the text even where it spills out of its element).
_PROBE = """<script>addEventListener('load', () => {
  const W = innerWidth, out = {innerWidth: W, scrollWidth: document.documentElement.scrollWidth,
                               wide: [], scrolled: [], captions: []};
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && (r.right > W + 0.5 || r.left < -0.5))
      out.wide.push(`${el.tagName.toLowerCase()} ${Math.round(r.left)}..${Math.round(r.right)}: ` +
                    (el.textContent || '').trim().slice(0, 50));
    const style = getComputedStyle(el);
    if (['auto', 'scroll'].includes(style.overflowX) && el.scrollWidth > el.clientWidth + 1)
      out.scrolled.push(`${el.tagName.toLowerCase()} ${el.scrollWidth} in ${el.clientWidth} px: ` +
                        (el.textContent || '').trim().slice(0, 50));
  }
  for (const caption of document.querySelectorAll('figcaption')) {
    const range = document.createRange();
    range.selectNodeContents(caption);
    const r = range.getBoundingClientRect();
    out.captions.push([r.left, r.top, r.right, r.bottom, caption.textContent.trim().slice(0, 50)]);
  }
  const probe = document.createElement('pre');
  probe.id = 'layout-probe';
  probe.textContent = JSON.stringify(out);
  document.body.appendChild(probe);
});</script>"""


def layout(path: str, work_dir: str, size: tuple[int, int]) -> dict:
    """What `_PROBE` measures in the page at `path` drawn in a window of `size` (a copy
    of the page with the probe added is opened; the page itself has no script)."""
    probed = os.path.join(work_dir, "probed-" + os.path.basename(path))
    with open(path, encoding="utf-8") as f:
        source = f.read()
    with open(probed, "w", encoding="utf-8") as f:
        f.write(source.replace("</body>", _PROBE + "</body>"))
    result = _run([f"--window-size={size[0]},{size[1]}", "--virtual-time-budget=5000", "--dump-dom"],
                  "file://" + os.path.abspath(probed))
    found = re.search(r"<pre id=\"layout-probe\">(.*?)</pre>", result.stdout, re.S)
    assert found, result.stderr[-2000:]
    return json.loads(html.unescape(found.group(1)))


def overlapping(boxes: list[list]) -> list[tuple[str, str]]:
    """Pairs of (left, top, right, bottom, text) boxes that share an area (over half a pixel each way)."""
    out = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            if min(a[2], b[2]) - max(a[0], b[0]) > 0.5 and min(a[3], b[3]) - max(a[1], b[1]) > 0.5:
                out.append((a[4], b[4]))
    return out


def check_fits(path: str, work_dir: str, window: str = "laptop") -> dict:
    """Asserts the page fits `window`'s width: no sideways scrolling (of the page or of a
    box in it), no element past the window's right edge, and no two figure captions
    overlapping. Returns the measurements."""
    size = WINDOWS[window]
    found = layout(path, work_dir, size)
    assert found["innerWidth"] == size[0], found["innerWidth"]
    assert found["scrollWidth"] <= found["innerWidth"], f"the page scrolls sideways: {found['scrollWidth']} px wide"
    assert not found["wide"], f"elements past the {size[0]} px window: {found['wide'][:5]}"
    assert not found["scrolled"], f"boxes scrolling sideways: {found['scrolled'][:5]}"
    assert not overlapping(found["captions"]), f"captions overlap: {overlapping(found['captions'])[:3]}"
    return found
