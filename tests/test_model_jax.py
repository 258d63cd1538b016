"""The model code is backend-agnostic: one training step of the tiny model under JAX."""
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

SCRIPT = r"""
import keras, numpy as np
assert keras.backend.backend() == "jax", keras.backend.backend()
import model
keras.utils.set_random_seed(0)
m = model.build_age_model(variant="tiny", gender=True)
m.compile(optimizer=keras.optimizers.Adam(1e-2),
          loss={"age": "sparse_categorical_crossentropy", "gender": "sparse_categorical_crossentropy"},
          metrics={"gender": ["accuracy"]})
x = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
y = np.random.default_rng(1).integers(0, 101, 8)
conv = m.get_layer("conv3_2").get_weights()[0].copy()
fc6 = m.get_layer("fc6").get_weights()[0].copy()
logs = m.train_on_batch(x, {"age": y, "gender": y % 2}, return_dict=True)
assert np.array_equal(conv, m.get_layer("conv3_2").get_weights()[0])
assert not np.array_equal(fc6, m.get_layer("fc6").get_weights()[0])
assert np.isfinite(logs["loss"]), logs
out = model.head(m).predict(model.feature_extractor(m).predict(x, verbose=0), verbose=0)
np.testing.assert_allclose(out["age"], m.predict(x, verbose=0)["age"], rtol=1e-5, atol=1e-6)
print("JAX-OK", sorted(logs))
"""


@pytest.mark.slow
def test_one_training_step_under_the_jax_backend():
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "JAX-OK" in r.stdout
