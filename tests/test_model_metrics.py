"""DEX expected age and the metrics of model.metrics against numpy."""
import keras
import numpy as np

import model


def test_expected_age_of_one_hot_and_uniform():
    one_hot = np.zeros((1, 101), "float32")
    one_hot[0, 37] = 1
    uniform = np.full((1, 101), 1 / 101, "float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.expected_age(one_hot)), [37.0])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.expected_age(uniform)), [50.0], rtol=1e-6)


def _probs(n, seed):
    logits = np.random.default_rng(seed).normal(size=(n, 101)) * 3
    p = np.exp(logits - logits.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)).astype("float32")


def test_per_example_functions_against_numpy():
    from model import metrics
    rng = np.random.default_rng(3)
    probs, ages = _probs(20, 4), rng.integers(0, 101, 20)
    expected = (probs * np.arange(101)).sum(-1)
    np.testing.assert_allclose(np.asarray(metrics.expected_age(probs)), expected, rtol=1e-5)
    err = np.abs(expected - ages)
    np.testing.assert_allclose(np.asarray(metrics.age_abs_error(ages, probs)), err, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.asarray(metrics.abs_error(ages, expected)), err, rtol=1e-5, atol=1e-4)
    # within(): an error of exactly CS_THRESHOLD counts, anything above does not.
    edges = np.array([0.0, metrics.CS_THRESHOLD, metrics.CS_THRESHOLD + 0.01, 30.0], "float32")
    assert np.asarray(metrics.within(edges)).tolist() == [1.0, 1.0, 0.0, 0.0]
    assert np.asarray(metrics.within(edges, 40.0)).tolist() == [1.0, 1.0, 1.0, 1.0]
    assert metrics.CS_NAME == "cs5" and metrics.CS_THRESHOLD == 5.0


def test_epsilon_error_against_hand_computed_values():
    # x = μ: 0; x = μ ± σ: 1 - e^-0.5 = 0.393469; x = μ + 2σ: 1 - e^-2 = 0.864665
    got = keras.ops.convert_to_numpy(model.metrics.epsilon_error(
        [30.0, 33.0, 27.0, 40.0], [30.0, 30.0, 30.0, 30.0], [4.0, 3.0, 3.0, 5.0]))
    np.testing.assert_allclose(got, [0.0, 0.393469, 0.393469, 0.864665], atol=1e-6)


def test_spread_epsilon_error_is_zero_without_a_spread_and_never_nan():
    from model import metrics
    got = np.asarray(metrics.spread_epsilon_error([33.0, 33.0, 40.0], [30.0, 30.0, 40.0], [3.0, 0.0, 0.0]))
    np.testing.assert_allclose(got, [0.393469, 0.0, 0.0], atol=1e-6)


def test_mean_abs_error_and_the_metric_names():
    from model import metrics
    assert metrics.mean_abs_error(np.array([10, 20, 31]), np.array([12.0, 20.0, 30.0])) == 1.0
    assert [metrics.val(n) for n in metrics.RATES] == ["val_loss", "val_accuracy", "val_mae", "val_cs5"]


def test_the_metric_table_gives_the_names_every_consumer_uses_without_tensorflow():
    import subprocess
    import sys
    code = ("import sys; from model import metric_names as m; "
            "print(m.best_choices(), m.RATES, sorted(k for k in ('tensorflow', 'keras') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "('val_loss', 'val_mae', 'val_epsilon_error') ('loss', 'accuracy', 'mae', 'cs5') []"
    from model import metric_names
    from trainer.config import BEST_METRICS, TrainConfig
    from trainer.history import HISTORY_FIELDS, OPTIONAL_FIELDS
    from trainer.reporter import EpochReporter
    assert BEST_METRICS == ("val_loss", "val_mae", "val_epsilon_error") and TrainConfig.best_metric == "val_loss"
    assert HISTORY_FIELDS == ("epoch", "loss", "accuracy", "mae", "cs5", "val_loss", "val_accuracy", "val_mae",
                              "val_cs5", "learning_rate", "epoch_seconds", "images_per_second")
    assert OPTIONAL_FIELDS == ("gender_accuracy", "val_gender_accuracy", "epsilon_error", "val_epsilon_error")
    assert EpochReporter.SHOWN == {"loss": "loss", "mae": "mae", "val_loss": "val_loss", "val_mae": "val_mae",
                                   "val_cs5": "val_cs5", "val_gender_accuracy": "val_gender_acc",
                                   "val_epsilon_error": "val_eps"}
    assert [m.label for m in metric_names.METRICS if m.card] == ["MAE (years)", "CS(5)"]
