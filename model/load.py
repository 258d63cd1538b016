"""A training run's model, loaded: best.keras with safe_mode (only registered layers)."""

from __future__ import annotations

import zipfile

import keras

from model import register_layers
from model.uncertainty import STALE_MESSAGE, interval_calibration
from storage.run_dir import RunDir, RunDirError


def load_run_model(run: RunDir, recalibrating: bool = False):
    """best.keras of a run, loaded with safe_mode (only registered layers).  A model whose
    intervals were calibrated by an earlier method loads only to be calibrated again
    (`recalibrating`)."""
    path = run.require_best_model()
    if not zipfile.is_zipfile(path):      # Keras then says "File not found" for a file that exists
        raise RunDirError(f"{path}: truncated or not a .keras file; train again with "
                          f"`python -m trainer --model_dir {run.path}` (it resumes)")
    register_layers()
    try:
        net = keras.saving.load_model(path, safe_mode=True)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
        # TypeError: an unregistered custom layer; KeyError: a zip without config.json.
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise RunDirError(f"{path}: cannot be loaded ({reason}); train again with "
                          f"`python -m trainer --model_dir {run.path}` (it resumes)") from e
    layer = interval_calibration(net)
    if layer is not None and layer.stale and not recalibrating:
        raise RunDirError(f"{path}: {STALE_MESSAGE.format(run=run.path)}")
    return net
