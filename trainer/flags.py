"""Every command-line flag of the trainer, the evaluator and the predictor, and the
config objects built from them.

Flags are defined here and nowhere else (library modules never define flags, so
two entry points can never collide), each entry point calls one `define_*`
function, and `train_config` turns the parsed flags into a frozen `TrainConfig`,
refusing every bad combination with one line before anything is built. Library
code (`trainer.train`, `trainer.features`, `trainer.evaluate`) takes that config
or plain arguments, never `FLAGS`.
"""

from __future__ import annotations

import dataclasses
import os
import time

from absl import flags, logging

from entry.errors import ProjectError
from model.age import TRAINABLE_FROM
from model.vgg_face import VARIANTS
from records.augment import DEFAULT_OPS, OPS
from records.reader import DEFAULT_SHUFFLE_BUFFER
from records.service.address import ServiceError, parse_address

FLAGS = flags.FLAGS

MIXED_PRECISION_POLICIES = {"none": None, "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
OPTIMIZERS = ("adam", "sgd", "adamw", "rmsprop")
STRATEGIES = ("default", "mirrored", "multi_worker")
TASKS = ("age", "age_gender")
BEST_METRICS = ("val_loss", "val_mae", "val_epsilon_error")   # all: lower is better
LR_SCHEDULES = ("constant", "cosine")
TTA = ("none", "flip")               # --tta of trainer.evaluate and trainer.predict
FEATURES_BATCH_SIZE = 128           # images per trunk forward pass (python -m trainer.features)
NO_WEIGHTS = "none"                 # --weights=none: random initialisation
CLUSTER_TIMEOUT = 300.0             # seconds to wait for every multi-worker peer (they start at different times)
DATA_SERVICE_DEADLINE_S = 3600.0    # --data_service_deadline: the bound on one service epoch

# Settings a resumed run must not change: they decide the network or the meaning of its
# saved state. Checked against the run's run.json (trainer.run_dir).
FIXED_ON_RESUME = ("variant", "task", "cache_features", "best_metric", "trainable_from")


class ConfigError(ProjectError):
    """A bad flag or combination of flags; the message names the flag and the fix."""


def default_trainable_from(weights: str | None, init_from: str | None) -> str:
    """--trainable_from's default: all from random initialisation (weights None and no
    init_from: nothing else would train the trunk), fc6 on trained weights."""
    return "all" if weights is None and init_from is None else TRAINABLE_FROM[0]


def parse_weights(value: str) -> str | None:
    """--weights: a path, or None for 'none' (random initialisation)."""
    return None if value.lower() == NO_WEIGHTS else value


def _define_trunk_flags(batch_size: int, batch_help: str) -> None:
    """The flags the trainer and the feature cache share, with the same meaning."""
    flags.DEFINE_string("records", "shards/wiki",
                        "Directory of image shards written by `python -m ingest` (holds manifest.json). "
                        "The trainer takes several, comma-separated, and mixes their training "
                        "records by --records_weights.")
    flags.DEFINE_string("weights", "vgg_face_weights.h5",
                        "Path to the Keras-2 `vgg_face_weights.h5`, or 'none' to start from random "
                        "initialisation drawn with --seed. Nothing is ever downloaded.")
    flags.DEFINE_enum("variant", "full", sorted(VARIANTS),
                      "full: VGG-Face at 224x224. small: the same 13 convolutions, narrow, with "
                      "BatchNorm, 64x64: learns real faces from scratch on a CPU and fits a phone "
                      "(small.flags). tiny: narrower, 32x32, for tests and CPU demos.")
    flags.DEFINE_integer("seed", 0, "Seed of weight initialisation, data order and dropout.")
    flags.DEFINE_integer("batch_size", batch_size, batch_help)


def define_train_flags() -> None:
    """Flags of `python -m trainer`."""
    _define_trunk_flags(256, "Global batch size (split across replicas).")
    # Data.
    flags.DEFINE_enum("validation_split", "val", ["val", "test"],
                      "Split used for per-epoch validation and best-model selection. 'val' keeps "
                      "the test split unseen; 'test' reproduces the original recipe, which leaks "
                      "the test set into model selection.")
    flags.DEFINE_list("records_weights", [],
                      "With several --records: the share of training records drawn from each, in "
                      "the same order (normalised); default equal shares.")
    flags.DEFINE_string("validation_records", None,
                        "Shard directory validated on, whose val split picks best.keras and whose test "
                        "split the final evaluation scores; default the last of --records.")
    flags.DEFINE_boolean("augment", False,
                         f"Augment training images with {','.join(DEFAULT_OPS)} (random horizontal flip "
                         f"and small random crop/scale; off by default, as in the original recipe).")
    flags.DEFINE_list("augment_ops", [],
                      f"The augmentation ops to apply, in order (overrides --augment): any of "
                      f"{', '.join(sorted(OPS))}. label_jitter draws the age from N(age_mean, age_std).")
    flags.DEFINE_integer("shuffle_buffer", DEFAULT_SHUFFLE_BUFFER,
                         "Serialized records in the training shuffle buffer.")
    # Model.
    flags.DEFINE_enum("task", "age", list(TASKS),
                      "age: the 101-way DEX age head. age_gender: plus a 2-way gender head "
                      "(records with unknown gender do not contribute to its loss).")
    flags.DEFINE_float("dropout", 0.5, "Dropout after fc6 and fc7.")
    flags.DEFINE_string("init_from", None,
                        "Start from a trained run (its directory, for best.keras, or a .keras file): "
                        "weights matched by layer name and shape; takes precedence over --weights.")
    flags.DEFINE_enum("trainable_from", None, list(TRAINABLE_FROM),
                      "First layer that trains: fc6 (trunk frozen to pool5), conv5_1 (the last "
                      "convolution block trains too) or all. Default: all with --weights=none and "
                      "no --init_from (a frozen random layer learns nothing; a frozen depth is "
                      "refused there), else fc6.")
    # Schedule and optimisation.
    flags.DEFINE_integer("epochs", 250, "Number of epochs.")
    flags.DEFINE_integer("steps_per_epoch", 0,
                         "Training batches per epoch; 0 = one pass over the training split. The "
                         "original recipe trains one random batch of 256 per epoch.")
    flags.DEFINE_integer("eval_batch_size", 0, "Validation/test batch size; 0 = --batch_size.")
    flags.DEFINE_float("learning_rate", 1e-3, "Learning rate (the peak, with a schedule).")
    flags.DEFINE_enum("lr_schedule", LR_SCHEDULES[0], list(LR_SCHEDULES),
                      "constant, or cosine decay to 0 over the run's steps (after any warm-up).")
    flags.DEFINE_integer("warmup_epochs", 0, "Epochs of linear learning-rate warm-up from 0.")
    flags.DEFINE_enum("optimizer", "adam", list(OPTIMIZERS), "Keras optimizer.")
    flags.DEFINE_enum("best_metric", "val_loss", list(BEST_METRICS),
                      "Validation metric that picks best.keras and drives --patience. val_loss is the "
                      "original recipe's ModelCheckpoint(save_best_only=True); val_mae follows the "
                      "quantity DEX reports, which keeps improving after the cross-entropy turns up; "
                      "val_epsilon_error is the ChaLearn LAP score (needs validation data with "
                      "apparent-age spreads, e.g. APPA-REAL).")
    flags.DEFINE_integer("patience", 0,
                         "Stop after this many epochs without a better --best_metric; 0 = never.")
    # Performance and scale-out.
    flags.DEFINE_enum("mixed_precision", "none", list(MIXED_PRECISION_POLICIES),
                      "Compute dtype: none (float32), bf16 (mixed_bfloat16, GPUs/TPUs since "
                      "Ampere) or fp16 (mixed_float16 with dynamic loss scaling).")
    flags.DEFINE_boolean("jit_compile", False, "Compile the forward/backward pass with XLA.")
    flags.DEFINE_enum("strategy", "default", list(STRATEGIES),
                      "tf.distribute strategy: default (one device), mirrored (all local GPUs, or "
                      "the --logical_cpus devices), multi_worker (hosts listed in TF_CONFIG).")
    flags.DEFINE_float("cluster_timeout", CLUSTER_TIMEOUT,
                       "--strategy=multi_worker: seconds to wait for every peer in TF_CONFIG to "
                       "accept a TCP connection before giving up with one line naming it.")
    flags.DEFINE_integer("logical_cpus", 0,
                         "Split the host CPU into this many logical devices (to try --strategy="
                         "mirrored without GPUs); 0 = leave the CPU as one device.")
    flags.DEFINE_string("data_service", "",
                        "grpc://HOST:PORT of a tf.data service dispatcher (`python -m records.service "
                        "dispatcher`): the training input pipeline (read, shuffle, decode, augment, "
                        "batch) runs on its workers, one job per epoch, each record once per epoch; "
                        "evaluation stays local. Empty: read in this process.")
    flags.DEFINE_float("data_service_deadline", DATA_SERVICE_DEADLINE_S,
                       "Seconds one training epoch through --data_service may take. A lost worker "
                       "can block the epoch: past this bound the run stops with one line saying how "
                       "many records arrived.")
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
    _define_trunk_flags(FEATURES_BATCH_SIZE, "Images per trunk forward pass.")


def define_evaluate_flags() -> None:
    """Flags of `python -m trainer.evaluate`."""
    flags.DEFINE_string("model_dir", None, "Run directory holding best.keras (from `python -m trainer`).")
    flags.DEFINE_string("records", None, "Shard directory; default: the one the run was trained on.")
    flags.DEFINE_string("split", "test", "Split to evaluate.")
    flags.DEFINE_integer("batch_size", 256, "Evaluation batch size.")
    _define_tta_flag()
    flags.mark_flag_as_required("model_dir")


def _define_tta_flag() -> None:
    flags.DEFINE_enum("tta", TTA[0], list(TTA),
                      "Test-time augmentation: flip scores each face as the mean of the softmax of "
                      "the image and of its mirror image.")


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
    flags.DEFINE_float("margin", None, "Margin added around each detected face box on every side, as a "
                       "fraction of its width/height. Default: the run's (run.json), the margin of the "
                       "crops it was trained on (0.4 IMDB-WIKI, APPA-REAL; 0.0 UTKFace).")
    flags.DEFINE_integer("min_face", 30, "Smallest face the detector reports, in pixels.")
    _define_tta_flag()
    flags.mark_flag_as_required("model_dir")


def define_export_flags() -> None:
    """Flags of `python -m trainer.export`."""
    flags.DEFINE_string("model_dir", None, "Run directory holding best.keras.")
    flags.DEFINE_string("out", None, "Export directory (a SavedModel, export.json and model.tflite); "
                        "an earlier export there is replaced once the new one is complete.")
    flags.DEFINE_enum("tta", TTA[0], list(TTA), "Test-time augmentation inside the export: flip "
                      "averages the age distributions of each face and its mirror image (two model calls).")
    flags.DEFINE_enum("tflite", "none", ["none", "float32", "float16"],
                      "Also write model.tflite (the pixel endpoint at the model's input size): float32, "
                      "or float16 weights (half the size).")
    flags.mark_flag_as_required("model_dir")
    flags.mark_flag_as_required("out")


def quiet_logs() -> None:
    """TensorFlow's INFO chatter (checkpoint sharding, ...) buries the epoch lines:
    show warnings and errors unless the user asked for more with -v/--verbosity.
    (`entry.run` does this for every command.)"""
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def default_model_dir() -> str:
    return os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything `trainer.train` needs, resolved: built once from the flags by
    `train_config`, then passed down (library code never reads FLAGS)."""
    # Data.
    records: str                        # validated on; its test split is the final evaluation's
    validation_split: str = "val"
    train_records: tuple[str, ...] = ()   # the training sources; () = (records,)
    records_weights: tuple[float, ...] = ()   # their shares; () = equal
    augment: bool = False
    augment_ops: tuple[str, ...] = ()   # () = DEFAULT_OPS with augment, none without
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER
    cache_features: bool = False
    # Model.
    weights: str | None = None          # None: random initialisation (--weights=none)
    variant: str = "full"
    task: str = "age"
    dropout: float = 0.5
    init_from: str | None = None        # a run directory or .keras file to start from
    trainable_from: str | None = None   # None: default_trainable_from, resolved by check
    # Schedule and optimisation.
    epochs: int = 250
    steps_per_epoch: int = 0            # 0: one pass over the training split
    batch_size: int = 256               # global, split across replicas
    eval_batch_size: int = 256          # resolved: --eval_batch_size or --batch_size
    learning_rate: float = 1e-3
    lr_schedule: str = LR_SCHEDULES[0]
    warmup_epochs: int = 0
    optimizer: str = "adam"
    best_metric: str = "val_loss"
    patience: int = 0                   # 0: never stop early
    seed: int = 0
    # Performance and scale-out.
    mixed_precision: str = "none"
    jit_compile: bool = False
    strategy: str = "default"
    cluster_timeout: float = CLUSTER_TIMEOUT
    logical_cpus: int = 0
    data_service: str = ""              # grpc://HOST:PORT; empty: the in-process reader
    data_service_deadline: float = DATA_SERVICE_DEADLINE_S
    # Run directory.
    model_dir: str = ""
    resume: bool = True
    evaluate: bool = True
    flag_lines: tuple[str, ...] = ()    # the resolved flags, written to flags.txt

    @property
    def with_gender(self) -> bool:
        return self.task == "age_gender"

    @property
    def sources(self) -> tuple[str, ...]:
        """The training record directories."""
        return self.train_records or (self.records,)

    @property
    def mix_weights(self) -> tuple[float, ...]:
        return self.records_weights or (1.0,) * len(self.sources)

    @property
    def augmentation(self) -> tuple[str, ...]:
        """The augmentation ops applied to training batches, in order."""
        return self.augment_ops or (DEFAULT_OPS if self.augment else ())

    @property
    def init_from_file(self) -> str | None:
        """The .keras file --init_from names (a run directory's best.keras)."""
        if self.init_from is None or not os.path.isdir(self.init_from):
            return self.init_from
        return os.path.join(self.init_from, "best.keras")

    def info(self) -> dict:
        """The settings recorded in run.json (with the data facts the trainer adds):
        those a resumed run must keep."""
        return {name: getattr(self, name) for name in FIXED_ON_RESUME}

    def check(self) -> "TrainConfig":
        """Refuse bad combinations with one line that names the flag and the fix; returns
        the config with the default --trainable_from resolved."""
        if self.trainable_from is None:
            return dataclasses.replace(
                self, trainable_from=default_trainable_from(self.weights, self.init_from)).check()
        if self.epochs < 1:
            raise ConfigError(f"--epochs={self.epochs}: must be at least 1")
        if self.batch_size < 1:
            raise ConfigError(f"--batch_size={self.batch_size}: must be at least 1")
        if self.eval_batch_size < 1:
            raise ConfigError(f"--eval_batch_size={self.eval_batch_size}: use 0 for --batch_size, or a positive count")
        if self.steps_per_epoch < 0:
            raise ConfigError(f"--steps_per_epoch={self.steps_per_epoch}: use 0 for a full pass, or a positive count")
        if self.learning_rate <= 0:
            raise ConfigError(f"--learning_rate={self.learning_rate}: must be positive")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"--dropout={self.dropout}: must be in [0, 1)")
        if self.patience < 0:
            raise ConfigError(f"--patience={self.patience}: use 0 to disable early stopping")
        if self.shuffle_buffer < 1:
            raise ConfigError(f"--shuffle_buffer={self.shuffle_buffer}: must be at least 1")
        unknown = [op for op in self.augment_ops if op not in OPS]
        if unknown:
            raise ConfigError(f"--augment_ops={','.join(self.augment_ops)}: unknown op {unknown[0]!r}; "
                              f"use any of {', '.join(sorted(OPS))}")
        if self.cache_features and self.augmentation:
            raise ConfigError("--cache_features with --augment: augmentation changes the trunk's "
                              "input every epoch, so its features cannot be cached; drop one of them")
        random_trunk = self.weights is None and self.init_from is None
        if self.cache_features and random_trunk:
            raise ConfigError("--cache_features with --weights=none and no --init_from: the cache would "
                              "hold the features of a random trunk, which nothing trains; pass "
                              "--weights=vgg_face_weights.h5 or drop --cache_features")
        if random_trunk and self.trainable_from != "all":
            raise ConfigError(f"--trainable_from={self.trainable_from} with --weights=none and no "
                              f"--init_from: the layers before {self.trainable_from} would stay random and "
                              f"frozen; use --trainable_from=all, or start from trained weights "
                              f"(--weights=vgg_face_weights.h5 or --init_from=RUN)")
        if self.cache_features and self.trainable_from != TRAINABLE_FROM[0]:
            raise ConfigError(f"--cache_features with --trainable_from={self.trainable_from}: the cache "
                              f"holds a frozen trunk's features; use --trainable_from={TRAINABLE_FROM[0]} "
                              f"or drop --cache_features")
        if self.cache_features and self.sources != (self.records,):
            raise ConfigError("--cache_features with several --records (or another --validation_records): "
                              "the feature cache holds one source; drop --cache_features or train and "
                              "validate on one source")
        if self.cache_features and self.init_from:
            raise ConfigError("--cache_features with --init_from: the cache is built from --weights, "
                              "not from that run's trunk; drop --cache_features")
        if self.records_weights and len(self.records_weights) != len(self.sources):
            raise ConfigError(f"--records_weights has {len(self.records_weights)} values for "
                              f"{len(self.sources)} --records; give one weight per source")
        if any(w < 0 for w in self.mix_weights) or not sum(self.mix_weights) > 0:
            raise ConfigError(f"--records_weights={','.join(map(str, self.mix_weights))}: weights must "
                              f"be non-negative with a positive sum")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ConfigError(f"--warmup_epochs={self.warmup_epochs}: must be between 0 and --epochs")
        if self.init_from_file is not None and not os.path.isfile(self.init_from_file):
            raise ConfigError(f"--init_from={self.init_from}: {self.init_from_file} not found; pass a run "
                              f"directory holding best.keras or a .keras file")
        if self.strategy == "multi_worker" and not os.environ.get("TF_CONFIG"):
            raise ConfigError("--strategy=multi_worker needs the TF_CONFIG environment variable "
                              "(cluster and task); see README 'Distributed training'")
        if self.cluster_timeout <= 0:
            raise ConfigError(f"--cluster_timeout={self.cluster_timeout:g}: must be a positive number of seconds")
        if self.data_service:
            try:
                parse_address(self.data_service)
            except ServiceError as e:
                raise ConfigError(f"--data_service: {e}") from None
            if len(self.sources) > 1:
                raise ConfigError(f"--records={','.join(self.sources)} with --data_service: the service reads "
                                  f"one shard directory; pass one --records")
            if self.steps_per_epoch:
                raise ConfigError(f"--steps_per_epoch={self.steps_per_epoch} with --data_service: an "
                                  f"epoch on the service is one pass over the training split; drop "
                                  f"--steps_per_epoch")
            if self.data_service_deadline <= 0:
                raise ConfigError(f"--data_service_deadline={self.data_service_deadline}: must be "
                                  f"positive (seconds)")
        if self.jit_compile and self.strategy != "default" and VARIANTS[self.variant].batch_norm:
            raise ConfigError(f"--jit_compile with --variant={self.variant} and --strategy={self.strategy}: its "
                              f"BatchNorm all-reduces the batch statistics across replicas, which XLA "
                              f"cannot compile; drop --jit_compile")
        if self.logical_cpus < 0 or self.logical_cpus == 1:
            raise ConfigError(f"--logical_cpus={self.logical_cpus}: use 0 (off) or at least 2")
        if self.weights is not None and self.init_from is None and not os.path.exists(self.weights):
            raise ConfigError(
                f"--weights={self.weights}: file not found; download vgg_face_weights.h5 and pass "
                f"--weights=/path/to/vgg_face_weights.h5, or --weights=none to train from scratch")
        if self.weights is not None and self.init_from is None and self.variant != "full":
            raise ConfigError(f"--variant={self.variant} with --weights: VGG-Face weights only fit the "
                              f"full variant; pass --weights=none for the {self.variant} one")
        return self


def resolved_flag_lines(f=FLAGS) -> tuple[str, ...]:
    """`--name=value` for every flag defined in this module, in a form --flagfile reads back."""
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
        f.trainable_from = default_trainable_from(parse_weights(f.weights) if explicit_weights else None,
                                                  f.init_from)
    values.update(weights=parse_weights(f.weights) if explicit_weights else None,
                  records=f.validation_records or sources[-1], train_records=sources,
                  records_weights=weights, augment_ops=tuple(f.augment_ops),
                  eval_batch_size=f.eval_batch_size or f.batch_size, flag_lines=resolved_flag_lines(f))
    return TrainConfig(**values).check()
