"""Serving a finished model: batch prediction on photos (`python -m serving.predict`),
one call from Python (`serving.AgeEstimator`), export as a SavedModel and TFLite
(`python -m serving.export`), the shipped models (`serving.shipped`, built by
`python -m serving.ship`), and the face finding they use. It reads a run directory or a
shipped model and never trains."""

__all__ = ["AgeEstimator", "Face", "Faces", "ImageError"]


def __getattr__(name):
    # TensorFlow loads with the estimator, not with the package: the commands' flag
    # modules stay light.
    if name in __all__:
        from serving import estimator
        return getattr(estimator, name)
    raise AttributeError(f"module 'serving' has no attribute {name!r}")
