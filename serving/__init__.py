"""Serving a finished model: batch prediction on photos (`python -m serving.predict`),
export as a SavedModel and TFLite (`python -m serving.export`), the face finder they
use and the pictures prediction draws. It reads a run directory and never trains."""
