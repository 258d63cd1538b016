"""What a served age model answers: the outputs every consumer of a trained model
shares (evaluation, batch prediction, the SavedModel and TFLite exports), so they
agree by construction. Backend-agnostic, like the rest of `model`.

    apparent_age   the expected age (years)
    age_sd         the spread of the predicted distribution (years)
    age_low, age_high   its INTERVAL_MASS (90%) interval, whole ages inclusive: the
                        calibrated one when the model carries a calibration
                        (uncertainty.served_interval), else the central one
    age_probs      the distribution over 0..100
    male_probability    (age_gender models)
"""

from __future__ import annotations

import keras

from . import metrics, uncertainty


def age_outputs(net, with_gender: bool, tta: bool):
    """uint8 pixels [B, H, W, 3] -> the output dict, with the flip average under tta."""
    def run(pixels):
        out = net(pixels, training=False)
        if tta:   # the mirror image is as much a face: average the two distributions
            mirrored = net(keras.ops.flip(pixels, axis=2), training=False)
            out = keras.tree.map_structure(lambda a, b: (a + b) / 2.0, out, mirrored)
        age = out["age"] if with_gender else out
        low, high = uncertainty.served_interval(net, age)
        result = {"apparent_age": metrics.expected_age(age), "age_sd": uncertainty.age_sd(age),
                  "age_low": low, "age_high": high, "age_probs": age}
        if with_gender:
            result["male_probability"] = out["gender"][:, 1]
        return result

    return run
