"""Every command-line flag of the trainer, the evaluator and the predictor.

Flags are defined here and nowhere else (library modules never define flags, so
two entry points can never collide), each entry point calls one `define_*`
function, and `check_train_flags` turns every bad combination into one line
before anything is built.
"""

from __future__ import annotations

import os
import time

from absl import flags

FLAGS = flags.FLAGS

MIXED_PRECISION_POLICIES = {"none": None, "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
OPTIMIZERS = ("adam", "sgd", "adamw", "rmsprop")
STRATEGIES = ("default", "mirrored", "multi_worker")

# Flags a resumed run must not change: they decide the network or the meaning of its saved state.
FIXED_ON_RESUME = ("variant", "task", "cache_features", "best_metric")


def define_train_flags() -> None:
    """Flags of `python -m trainer`."""
    # Data.
    flags.DEFINE_string("records", "shards/wiki",
                        "Directory of image shards written by `python -m ingest` (holds manifest.json).")
    flags.DEFINE_enum("validation_split", "val", ["val", "test"],
                      "Split used for per-epoch validation and best-model selection. 'val' keeps "
                      "the test split unseen; 'test' reproduces the original recipe, which leaks "
                      "the test set into model selection.")
    flags.DEFINE_boolean("augment", False,
                         "Random horizontal flip and small random crop/scale of training images "
                         "(off by default, as in the original recipe).")
    flags.DEFINE_integer("shuffle_buffer", 10000, "Records in the training shuffle buffer.")
    # Model.
    flags.DEFINE_string("weights", "vgg_face_weights.h5",
                        "Path to the Keras-2 `vgg_face_weights.h5`, or 'none' to train from random "
                        "initialisation. Nothing is ever downloaded.")
    flags.DEFINE_enum("variant", "full", ["full", "tiny"],
                      "full: VGG-Face at 224x224. tiny: the same topology, narrow and 32x32, for "
                      "tests and CPU demos.")
    flags.DEFINE_enum("task", "age", ["age", "age_gender"],
                      "age: the 101-way DEX age head. age_gender: plus a 2-way gender head "
                      "(records with unknown gender do not contribute to its loss).")
    flags.DEFINE_float("dropout", 0.5, "Dropout after fc6 and fc7.")
    # Schedule and optimisation.
    flags.DEFINE_integer("epochs", 250, "Number of epochs.")
    flags.DEFINE_integer("steps_per_epoch", 0,
                         "Training batches per epoch; 0 = one pass over the training split. The "
                         "original recipe trains one random batch of 256 per epoch.")
    flags.DEFINE_integer("batch_size", 256, "Global batch size (split across replicas).")
    flags.DEFINE_integer("eval_batch_size", 0, "Validation/test batch size; 0 = --batch_size.")
    flags.DEFINE_float("learning_rate", 1e-3, "Learning rate.")
    flags.DEFINE_enum("optimizer", "adam", list(OPTIMIZERS), "Keras optimizer.")
    flags.DEFINE_enum("best_metric", "val_loss", ["val_loss", "val_mae"],
                      "Validation metric that picks best.keras and drives --patience. val_loss is the "
                      "original recipe's ModelCheckpoint(save_best_only=True); val_mae follows the "
                      "quantity DEX reports, which keeps improving after the cross-entropy turns up.")
    flags.DEFINE_integer("patience", 0,
                         "Stop after this many epochs without a better --best_metric; 0 = never.")
    flags.DEFINE_integer("seed", 0, "Seed of weight initialisation, data order and dropout.")
    # Performance and scale-out.
    flags.DEFINE_enum("mixed_precision", "none", list(MIXED_PRECISION_POLICIES),
                      "Compute dtype: none (float32), bf16 (mixed_bfloat16, GPUs/TPUs since "
                      "Ampere) or fp16 (mixed_float16 with dynamic loss scaling).")
    flags.DEFINE_boolean("jit_compile", False, "Compile the forward/backward pass with XLA.")
    flags.DEFINE_enum("strategy", "default", list(STRATEGIES),
                      "tf.distribute strategy: default (one device), mirrored (all local GPUs, or "
                      "the --logical_cpus devices), multi_worker (hosts listed in TF_CONFIG).")
    flags.DEFINE_integer("logical_cpus", 0,
                         "Split the host CPU into this many logical devices (to try --strategy="
                         "mirrored without GPUs); 0 = leave the CPU as one device.")
    flags.DEFINE_boolean("cache_features", False,
                         "Compute the frozen VGG-Face trunk once into feature shards and train only "
                         "the head on them (incompatible with --augment).")
    # Run directory.
    flags.DEFINE_string("model_dir", None,
                        "Run directory for checkpoints, best.keras, history.csv, flags.txt and "
                        "reports; default runs/<timestamp>.")
    flags.DEFINE_boolean("resume", True,
                         "Continue from the last completed epoch when --model_dir already holds a "
                         "checkpoint. --noresume refuses to touch an existing run.")
    flags.DEFINE_boolean("evaluate", True, "Evaluate best.keras on the test split after training.")
    flags.DEFINE_boolean("dry_run", False, "Check the flags and the shards, print the resolved flags "
                         "and the plan, and exit without building the model.")


def define_features_flags() -> None:
    """Flags of `python -m trainer.features` (the same meaning as the trainer's)."""
    flags.DEFINE_string("records", "shards/wiki", "Directory of image shards written by `python -m ingest`.")
    flags.DEFINE_string("weights", "vgg_face_weights.h5",
                        "Path to vgg_face_weights.h5, or 'none' for a random trunk drawn with --seed.")
    flags.DEFINE_enum("variant", "full", ["full", "tiny"], "Model variant whose trunk is cached.")
    flags.DEFINE_integer("seed", 0, "Seed of a random trunk (with --weights=none); as the trainer's --seed.")
    flags.DEFINE_integer("batch_size", 128, "Images per trunk forward pass.")


def define_evaluate_flags() -> None:
    """Flags of `python -m trainer.evaluate`."""
    flags.DEFINE_string("model_dir", None, "Run directory holding best.keras (from `python -m trainer`).")
    flags.DEFINE_string("records", None, "Shard directory; default: the one the run was trained on.")
    flags.DEFINE_string("split", "test", "Split to evaluate.")
    flags.DEFINE_integer("batch_size", 256, "Evaluation batch size.")
    flags.mark_flag_as_required("model_dir")


def define_predict_flags() -> None:
    """Flags of `python -m trainer.predict`."""
    flags.DEFINE_string("model_dir", None, "Run directory holding best.keras.")
    flags.DEFINE_string("output", None, "Append one JSON line per file here, as the files complete; a rerun "
                        "with the same file skips the files already in it.")
    flags.DEFINE_boolean("probs", False, "Add each face's age distribution (age_probs, 101 floats).")
    flags.DEFINE_integer("batch_size", 64, "Faces per model call.")
    flags.DEFINE_string("out", None, "Write annotated photos and per-face age distributions here.")
    flags.DEFINE_boolean("no_detect", False, "Treat each image as one face crop instead of detecting "
                         "faces with OpenCV's bundled Haar cascade.")
    flags.DEFINE_boolean("json", False, "Print one JSON list instead of text (without --output).")
    flags.DEFINE_float("margin", 0.4, "Margin added around each detected face, as a fraction of "
                       "the face box (IMDB-WIKI crops have 40%).")
    flags.DEFINE_integer("min_face", 30, "Smallest face the detector reports, in pixels.")
    flags.mark_flag_as_required("model_dir")


def define_export_flags() -> None:
    """Flags of `python -m trainer.export`."""
    flags.DEFINE_string("model_dir", None, "Run directory holding best.keras.")
    flags.DEFINE_string("out", None, "Export directory (a SavedModel, export.json and model.tflite); "
                        "an earlier export there is replaced once the new one is complete.")
    flags.DEFINE_enum("tta", "none", ["none", "flip"], "Test-time augmentation inside the export: flip "
                      "averages the age distributions of each face and its mirror image (two model calls).")
    flags.DEFINE_enum("tflite", "none", ["none", "float32", "float16"],
                      "Also write model.tflite (the pixel endpoint at the model's input size): float32, "
                      "or float16 weights (half the size).")
    flags.mark_flag_as_required("model_dir")
    flags.mark_flag_as_required("out")


def quiet_logs() -> None:
    """TensorFlow's INFO chatter (checkpoint sharding, ...) buries the epoch lines:
    show warnings and errors unless the user asked for more with -v/--verbosity."""
    from absl import logging
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def default_model_dir() -> str:
    return os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))


def check_train_flags(f=FLAGS) -> None:
    """Refuse bad combinations with one line that names the flag and the fix."""
    if f.epochs < 1:
        raise flags.ValidationError(f"--epochs={f.epochs}: must be at least 1")
    if f.batch_size < 1:
        raise flags.ValidationError(f"--batch_size={f.batch_size}: must be at least 1")
    if f.steps_per_epoch < 0:
        raise flags.ValidationError(f"--steps_per_epoch={f.steps_per_epoch}: use 0 for a full pass, or a positive count")
    if f.learning_rate <= 0:
        raise flags.ValidationError(f"--learning_rate={f.learning_rate}: must be positive")
    if not 0 <= f.dropout < 1:
        raise flags.ValidationError(f"--dropout={f.dropout}: must be in [0, 1)")
    if f.patience < 0:
        raise flags.ValidationError(f"--patience={f.patience}: use 0 to disable early stopping")
    if f.cache_features and f.augment:
        raise flags.ValidationError("--cache_features with --augment: augmentation changes the trunk's "
                                    "input every epoch, so its features cannot be cached; drop one of them")
    if f.strategy == "multi_worker" and not os.environ.get("TF_CONFIG"):
        raise flags.ValidationError("--strategy=multi_worker needs the TF_CONFIG environment variable "
                                    "(cluster and task); see README 'Distributed training'")
    if f.logical_cpus < 0 or f.logical_cpus == 1:
        raise flags.ValidationError(f"--logical_cpus={f.logical_cpus}: use 0 (off) or at least 2")
    if f.weights.lower() != "none" and not os.path.exists(f.weights):
        raise flags.ValidationError(
            f"--weights={f.weights}: file not found; download vgg_face_weights.h5 and pass "
            f"--weights=/path/to/vgg_face_weights.h5, or --weights=none to train from scratch")
    if f.weights.lower() != "none" and f.variant == "tiny":
        raise flags.ValidationError("--variant=tiny with --weights: VGG-Face weights only fit the full "
                                    "variant; pass --weights=none for the tiny one")
