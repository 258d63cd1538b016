"""The command lines of the trainer, the feature cache and the evaluator: their
absl flags, and the config objects built from them.

Flags are defined here and in `serving.flags` and nowhere else (library modules
never define flags, so two entry points can never collide); each entry point calls
one `define_*` function, and `train_config` turns the parsed flags into a frozen
`trainer.config.TrainConfig`, refusing every bad combination with one line before
anything is built. Library code imports `trainer.config`, never this module.
"""

from __future__ import annotations

import dataclasses

from absl import flags

import entry

from model.tta import define_tta_flag
from model.families import REGISTERED, TRAINABLE_FROM, VARIANTS
from records.augment_ops import DEFAULT_OPS, OP_NAMES
from records.manifest import check_split, read_manifest
from storage.run_dir import RunDir, check_run
from trainer.config import (DEFAULT_THRESHOLDS, BEST_METRICS, FEATURES_BATCH_SIZE, LR_SCHEDULES,
                            MIXED_PRECISION_POLICIES, OPTIMIZERS, STRATEGIES, TASKS, ConfigError, TrainConfig,
                            check_evaluate, default_model_dir, default_trainable_from, parse_weights)
from trainer.resume import check_run_dir

FLAGS = flags.FLAGS
D = TrainConfig.__dataclass_fields__   # the defaults live in one place: trainer.config.TrainConfig


def _define_trunk_flags(batch_size: int, batch_help: str) -> None:
    """The flags the trainer and the feature cache share, with the same meaning."""
    flags.DEFINE_string("records", "shards/wiki",
                        "Directory of image shards written by `python -m ingest` (holds manifest.json). "
                        "The trainer takes several, comma-separated, and mixes their training "
                        "records by --records_weights.")
    flags.DEFINE_string("weights", "vgg_face_weights.h5",
                        "Path to the trunk's weights file (" +
                        "; ".join(f"{f.name}: {f.weights_file}" for f in REGISTERED) +
                        "), or 'none' to start from random initialisation drawn with --seed. "
                        "Nothing is ever downloaded.")
    flags.DEFINE_enum("variant", D["variant"].default, sorted(VARIANTS),
                      " ".join(f.variant_help for f in REGISTERED))
    flags.DEFINE_integer("seed", D["seed"].default, "Seed of weight initialisation, data order and dropout.")
    flags.DEFINE_integer("batch_size", batch_size, batch_help)


def define_train_flags() -> None:
    """Flags of `python -m trainer`."""
    _define_trunk_flags(D["batch_size"].default, "Global batch size (split across replicas).")
    # Data.
    flags.DEFINE_enum("validation_split", D["validation_split"].default, ["val", "test"],
                      "Split used for per-epoch validation and best-model selection. 'val' keeps "
                      "the test split unseen; 'test' reproduces the original recipe, which leaks "
                      "the test set into model selection.")
    flags.DEFINE_list("records_weights", [],
                      "With several --records: the share of training records drawn from each, in "
                      "the same order (normalised); default equal shares.")
    flags.DEFINE_string("validation_records", None,
                        "Shard directory validated on, whose val split picks best.keras and whose test "
                        "split the final evaluation scores; default the last of --records.")
    flags.DEFINE_boolean("augment", D["augment"].default,
                         f"Augment training images with {','.join(DEFAULT_OPS)} (random horizontal flip "
                         f"and small random crop/scale; off by default, as in the original recipe).")
    flags.DEFINE_list("augment_ops", [],
                      f"The augmentation ops to apply, in order (overrides --augment): any of "
                      f"{', '.join(sorted(OP_NAMES))}. label_jitter draws the age from N(age_mean, age_std).")
    flags.DEFINE_integer("shuffle_buffer", D["shuffle_buffer"].default,
                         "Serialized records in the training shuffle buffer.")
    # Model.
    flags.DEFINE_enum("task", D["task"].default, list(TASKS),
                      "age: the 101-way DEX age head. age_gender: plus a 2-way gender head "
                      "(records with unknown gender do not contribute to its loss).")
    flags.DEFINE_float("dropout", D["dropout"].default, "Dropout in the neck (VGG: after fc6 and fc7; "
                       "mobilenet: after fc).")
    flags.DEFINE_string("init_from", None,
                        "Start from a trained run (its directory, for best.keras, or a .keras file): "
                        "weights matched by layer name and shape; takes precedence over --weights.")
    flags.DEFINE_enum("trainable_from", None, list(TRAINABLE_FROM),
                      "First layer that trains, one of the variant's family's: " +
                      " ".join(f.trainable_help for f in REGISTERED) +
                      " Default: all with --weights=none and no --init_from (a frozen random "
                      "layer learns nothing; a frozen depth is refused there), else the family's "
                      "first (the trunk frozen).")
    # Schedule and optimisation.
    flags.DEFINE_integer("epochs", D["epochs"].default, "Number of epochs.")
    flags.DEFINE_integer("steps_per_epoch", D["steps_per_epoch"].default,
                         "Training batches per epoch; 0 = one pass over the training split. The "
                         "original recipe trains one random batch of 256 per epoch.")
    flags.DEFINE_integer("eval_batch_size", 0, "Validation/test batch size; 0 = --batch_size.")
    flags.DEFINE_float("learning_rate", D["learning_rate"].default, "Learning rate (the peak, with a schedule).")
    flags.DEFINE_enum("lr_schedule", D["lr_schedule"].default, list(LR_SCHEDULES),
                      "constant, or cosine decay to 0 over the run's steps (after any warm-up).")
    flags.DEFINE_integer("warmup_epochs", D["warmup_epochs"].default, "Epochs of linear learning-rate warm-up from 0.")
    flags.DEFINE_enum("optimizer", D["optimizer"].default, list(OPTIMIZERS), "Keras optimizer.")
    flags.DEFINE_enum("best_metric", D["best_metric"].default, list(BEST_METRICS),
                      "Validation metric that picks best.keras and drives --patience. val_loss is the "
                      "original recipe's ModelCheckpoint(save_best_only=True); val_mae follows the "
                      "quantity DEX reports, which keeps improving after the cross-entropy turns up; "
                      "val_epsilon_error is the ChaLearn LAP score (needs validation data with "
                      "apparent-age spreads, e.g. APPA-REAL).")
    flags.DEFINE_integer("patience", D["patience"].default,
                         "Stop after this many epochs without a better --best_metric; 0 = never.")
    # Performance and scale-out.
    flags.DEFINE_enum("mixed_precision", D["mixed_precision"].default, list(MIXED_PRECISION_POLICIES),
                      "Compute dtype: none (float32), bf16 (mixed_bfloat16, GPUs/TPUs since "
                      "Ampere) or fp16 (mixed_float16 with dynamic loss scaling).")
    flags.DEFINE_boolean("jit_compile", D["jit_compile"].default, "Compile the forward/backward pass with XLA.")
    flags.DEFINE_enum("strategy", D["strategy"].default, list(STRATEGIES),
                      "tf.distribute strategy: default (one device), mirrored (all local GPUs, or "
                      "the --logical_cpus devices), multi_worker (hosts listed in TF_CONFIG).")
    flags.DEFINE_float("cluster_timeout", D["cluster_timeout"].default,
                       "--strategy=multi_worker: seconds to wait for every peer in TF_CONFIG to "
                       "accept a TCP connection before giving up with one line naming it.")
    flags.DEFINE_integer("logical_cpus", D["logical_cpus"].default,
                         "Split the host CPU into this many logical devices (to try --strategy="
                         "mirrored without GPUs); 0 = leave the CPU as one device.")
    flags.DEFINE_string("data_service", D["data_service"].default,
                        "grpc://HOST:PORT of a tf.data service dispatcher (`python -m records.service "
                        "dispatcher`): the training input pipeline (read, shuffle, decode, augment, "
                        "batch) runs on its workers, one job per epoch, each record once per epoch; "
                        "evaluation stays local. Empty: read in this process.")
    flags.DEFINE_float("data_service_deadline", D["data_service_deadline"].default,
                       "Seconds one training epoch through --data_service may take. A lost worker "
                       "can block the epoch: past this bound the run stops with one line saying how "
                       "many records arrived.")
    flags.DEFINE_boolean("cache_features", D["cache_features"].default,
                         "Compute the frozen trunk (up to its family's feature layer, VGG: pool5) "
                         "once into feature shards and train only the head on them (incompatible with --augment).")
    # Run directory.
    flags.DEFINE_string("model_dir", None,
                        "Run directory for checkpoints, best.keras, history.csv, flags.txt and "
                        "reports; default runs/<timestamp>.")
    flags.DEFINE_boolean("resume", D["resume"].default,
                         "Continue from the last completed epoch when --model_dir already holds a "
                         "checkpoint. --noresume refuses to touch an existing run.")
    flags.DEFINE_boolean("evaluate", D["evaluate"].default, "Evaluate best.keras on the test split after training.")
    flags.DEFINE_boolean("dry_run", False, "Check the flags and the shards, print the resolved flags "
                         "and the plan, and exit without building the model.")


def define_features_flags() -> None:
    """Flags of `python -m trainer.features` (the same meaning as the trainer's)."""
    _define_trunk_flags(FEATURES_BATCH_SIZE, "Images per trunk forward pass.")


def define_evaluate_flags() -> None:
    """Flags of `python -m trainer.evaluate`."""
    flags.DEFINE_string("model_dir", None, "Run directory holding best.keras (from `python -m trainer`).")
    flags.DEFINE_string("records", None, "Shard directory; default: the one the run was trained on. "
                        "Several, comma-separated: the run scored on each, and one table of them "
                        "(cross-<names>.json/.md in the run directory).")
    flags.DEFINE_string("split", "test", "Split to evaluate.")
    flags.DEFINE_integer("batch_size", D["eval_batch_size"].default, "Evaluation batch size.")
    define_tta_flag()
    flags.DEFINE_multi_integer("age_threshold", list(DEFAULT_THRESHOLDS),
                               "An age gate to report (repeatable): the share of faces under it "
                               "estimated at or over it (false adult) and over it estimated under "
                               "(false minor).")
    flags.DEFINE_integer("challenge_age", None, "With --age_threshold T: also the share of faces under "
                         "T estimated at or over this age (what a 'Challenge 25' policy lets through).")
    flags.DEFINE_boolean("calibrate", False, "Calibrate the 50/80/90% intervals on the val split "
                         "(split-conformal, per band of the estimated age) and store the calibration "
                         "in best.keras and run.json (the report shows the coverage before and after).")
    flags.DEFINE_float("max_false_adult", None, "With --age_threshold T: choose the smallest challenge "
                       "age whose share of faces under T estimated at or over it is at most this on "
                       "the val split in every group, and report its rates (a share, 0..1).")
    flags.DEFINE_boolean("thumbnails", True, "Show the worst faces as thumbnails in report.html "
                         "(--nothumbnails: a report to share without face pictures).")
    flags.mark_flag_as_required("model_dir")


def check_evaluate_values(argv: list[str]) -> None:
    """The values of trainer.evaluate's command line that no flag type checks; no
    TensorFlow, so the command checks them before it loads."""
    entry.only_flags(argv)
    check_evaluate(FLAGS.batch_size, tuple(FLAGS.age_threshold), FLAGS.challenge_age,
                   FLAGS.max_false_adult, records_list(FLAGS.records), FLAGS.calibrate)
    check_run(FLAGS.model_dir)
    records = records_list(FLAGS.records) or (RunDir(FLAGS.model_dir).read_info().get("records"),)
    for directory in records:
        if isinstance(directory, str):      # a run.json without it is refused where it is read
            check_split(directory, read_manifest(directory), FLAGS.split)


def records_list(value: str | None) -> tuple[str, ...]:
    """--records of trainer.evaluate as directories (() for the run's own)."""
    return tuple(d.strip() for d in (value or "").split(",") if d.strip())


def check_features_values(argv: list[str]) -> None:
    """trainer.features' command line before TensorFlow loads: flags only, and a data set."""
    entry.only_flags(argv)
    read_manifest(FLAGS.records)


def check_train_paths(config: TrainConfig) -> None:
    """The trainer's paths before TensorFlow loads: every --records (and
    --validation_records) is a data set, --model_dir is new, empty or a run, and a run
    it would resume was trained with the same settings and data (records.manifest.
    read_manifest, storage.run_dir.RunDir.check, trainer.resume.check_run_dir: one line each)."""
    manifests = {records: read_manifest(records) for records in dict.fromkeys((*config.sources, config.records))}
    run = RunDir(config.model_dir)
    run.check()
    check_run_dir(run, config, manifests[config.records], [manifests[d] for d in config.sources])


def resolved_flag_lines(f=FLAGS) -> tuple[str, ...]:
    """`--NAME=value` for every flag defined in this module, in a form --flagfile reads back."""
    return tuple(flag.serialize() for flag in sorted(f.get_flags_for_module(__name__), key=lambda x: x.name)
                 if flag.serialize())


def train_config(f=FLAGS) -> TrainConfig:
    """The checked TrainConfig of `python -m trainer`'s parsed flags."""
    if f.model_dir is None:
        f.model_dir = default_model_dir()     # resolved here, so flags.txt records it
    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    values = {name: f[name].value for name in fields if name in f}
    sources = tuple(d.strip() for d in f.records.split(",") if d.strip())
    if not sources:
        raise ConfigError("--records is empty; pass a shard directory (several, comma-separated)")
    try:
        weights = tuple(float(w) for w in f.records_weights)
    except ValueError:
        raise ConfigError(f"--records_weights={','.join(f.records_weights)}: not numbers; "
                          f"pass one number per source, e.g. 0.3,0.7") from None
    # --init_from takes precedence over --weights; an explicit --weights is kept so that
    # build_state can say it was not loaded.
    explicit_weights = f["weights"].present or not f.init_from
    if f.trainable_from is None:            # resolved here, so flags.txt records it
        f.trainable_from = default_trainable_from(
            f.variant, parse_weights(f.weights) if explicit_weights else None, f.init_from)
    values.update(weights=parse_weights(f.weights) if explicit_weights else None,
                  records=f.validation_records or sources[-1], train_records=sources,
                  records_weights=weights, augment_ops=tuple(f.augment_ops),
                  eval_batch_size=f.eval_batch_size or f.batch_size, flag_lines=resolved_flag_lines(f))
    return TrainConfig(**values).check()
