"""The trainer's settings: the config objects library code takes,
their allowed values and defaults, and `ConfigError`.

`trainer.flags` (the command lines) builds these objects from parsed flags and reads
its defaults from them; library code (`trainer.train`, `trainer.features`,
`trainer.evaluate`) imports this module, never the flags (serving's settings: `serving.config`).
"""

from __future__ import annotations

import dataclasses
import os
import time

from errors import ProjectError
from model import metric_names as metrics
from model.families import VARIANTS, family_of
from records.augment_ops import OP_NAMES
from records.augment_ops import resolve as resolve_augment
from records.schema import DEFAULT_SHUFFLE_BUFFER, NUM_AGES
from records.service.address import ServiceError, parse_address

MIXED_PRECISION_POLICIES = {"none": None, "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
OPTIMIZERS = ("adam", "sgd", "adamw", "rmsprop")
STRATEGIES = ("default", "mirrored", "multi_worker")
TASKS = ("age", "age_gender")
MAX_CROSS_RECORDS = 8       # data sets one trainer.evaluate scores into one table
DEFAULT_THRESHOLDS = (18,)   # --age_threshold's default: the age gate every report shows (reports.groups)
BEST_METRICS = metrics.best_choices()   # val_loss, val_mae, val_epsilon_error: all lower is better
LR_SCHEDULES = ("constant", "cosine")
FEATURES_BATCH_SIZE = 128           # images per trunk forward pass (python -m trainer.features)
NO_WEIGHTS = "none"                 # --weights=none: random initialisation
CLUSTER_TIMEOUT = 300.0             # seconds to wait for every multi-worker peer (they start at different times)
DATA_SERVICE_DEADLINE_S = 3600.0    # --data_service_deadline: the bound on one service epoch

# Settings a resumed run must not change: they decide the network or the meaning of its
# saved state. Checked against the run's run.json (storage.run_dir).
FIXED_ON_RESUME = ("variant", "task", "cache_features", "best_metric", "trainable_from")


class ConfigError(ProjectError):
    """A bad flag or combination of flags; the message names the flag and the fix."""

def default_trainable_from(variant: str, weights: str | None, init_from: str | None) -> str:
    """--trainable_from's default: all from random initialisation (weights None and no
    init_from: nothing else would train the trunk), on trained weights the variant's
    family's first depth (the trunk frozen; VGG: fc6)."""
    return "all" if weights is None and init_from is None else family_of(variant).trainable_from[0]


def parse_weights(value: str) -> str | None:
    """--weights: a path, or None for 'none' (random initialisation)."""
    return None if value.lower() == NO_WEIGHTS else value

DURATION_UNITS = {"h": 3600, "m": 60, "s": 1}   # --time_limit's units, largest first


def parse_duration(text: str) -> float:
    """--time_limit: '' or '0' (no limit) -> 0, else hours/minutes/seconds such as
    '20m', '1h30m', '90s' -> seconds."""
    rest, total = text.strip().lower(), 0.0
    if rest in ("", "0"):
        return 0.0
    for unit, seconds in DURATION_UNITS.items():
        number, sep, after = rest.partition(unit)
        if sep:
            if not number.isdigit():
                break
            total, rest = total + int(number) * seconds, after
    if rest or total <= 0:
        raise ConfigError(f"--time_limit={text}: not a duration; write hours, minutes and seconds "
                          f"such as 20m, 1h30m or 90s (0 for no limit)")
    return total


def format_duration(seconds: float) -> str:
    """Seconds as --time_limit writes them: 1h30m, 20m, 1m30s, 45s."""
    rest, parts = int(round(seconds)), []
    for unit, size in DURATION_UNITS.items():
        if rest >= size or (unit == "s" and not parts):
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)


def default_model_dir() -> str:
    return os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))


def check_evaluate(batch_size: int, thresholds, challenge_age: int | None, max_false_adult: float | None = None,
                   records: tuple[str, ...] = (), calibrate: bool = False) -> None:
    """The values of an evaluation that no flag type checks."""
    if batch_size < 1:
        raise ConfigError(f"--batch_size={batch_size}: must be at least 1")
    check_thresholds(thresholds, challenge_age)
    if max_false_adult is not None:
        if not 0 <= max_false_adult < 1:
            raise ConfigError(f"--max_false_adult={max_false_adult}: must be a share in [0, 1), e.g. 0.05")
        if not thresholds:
            raise ConfigError("--max_false_adult needs an --age_threshold to apply to")
    if len(records) > MAX_CROSS_RECORDS:
        raise ConfigError(f"--records: {len(records)} data sets; score at most {MAX_CROSS_RECORDS} at once")
    if len(records) != len(set(records)):
        raise ConfigError("--records names a data set twice; list each once")
    if calibrate and len(records) > 1:
        raise ConfigError("--calibrate with several --records: calibrate on one data set, then score several")


def check_thresholds(thresholds, challenge_age: int | None) -> None:
    """Thresholds and the challenge age are ages 1..100; a challenge age is above every threshold."""
    for t in thresholds:
        if not 1 <= t <= NUM_AGES - 1:
            raise ConfigError(f"--age_threshold={t}: must be an age in 1..{NUM_AGES - 1}")
    if challenge_age is not None:
        if not thresholds:
            raise ConfigError("--challenge_age needs an --age_threshold to apply to")
        if not max(thresholds) < challenge_age <= NUM_AGES - 1:
            raise ConfigError(f"--challenge_age={challenge_age}: must be above every --age_threshold "
                              f"({max(thresholds)}) and at most {NUM_AGES - 1}")


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
    eval_batch_size: int = 256          # resolved: --eval_batch_size or --batch_size (trainer.evaluate's default)
    learning_rate: float = 1e-3
    lr_schedule: str = LR_SCHEDULES[0]
    warmup_epochs: int = 0
    optimizer: str = "adam"
    best_metric: str = BEST_METRICS[0]
    patience: int = 0                   # 0: never stop early
    time_limit: float = 0.0             # seconds of training in this process; 0: no limit
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
        return resolve_augment(self.augment_ops or self.augment)

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
        if self.variant not in VARIANTS:
            raise ConfigError(f"--variant={self.variant}: unknown; use one of {', '.join(sorted(VARIANTS))}")
        family = family_of(self.variant)
        if self.trainable_from is None:
            return dataclasses.replace(
                self, trainable_from=default_trainable_from(self.variant, self.weights, self.init_from)).check()
        if self.trainable_from not in family.trainable_from:
            raise ConfigError(f"--trainable_from={self.trainable_from} with --variant={self.variant}: the "
                              f"{family.name} family trains from one of {', '.join(family.trainable_from)}")
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
        if self.time_limit < 0:
            raise ConfigError(f"--time_limit={self.time_limit}: use 0 for no limit, or a duration such as 20m")
        if self.time_limit and self.strategy == "multi_worker":
            raise ConfigError("--time_limit with --strategy=multi_worker: each host's clock would stop it "
                              "after a different epoch; bound the run with --epochs instead")
        if self.shuffle_buffer < 1:
            raise ConfigError(f"--shuffle_buffer={self.shuffle_buffer}: must be at least 1")
        unknown = [op for op in self.augment_ops if op not in OP_NAMES]
        if unknown:
            raise ConfigError(f"--augment_ops={','.join(self.augment_ops)}: unknown op {unknown[0]!r}; "
                              f"use any of {', '.join(sorted(OP_NAMES))}")
        if self.cache_features and self.augmentation:
            raise ConfigError("--cache_features with --augment: augmentation changes the trunk's "
                              "input every epoch, so its features cannot be cached; drop one of them")
        random_trunk = self.weights is None and self.init_from is None
        if self.cache_features and random_trunk:
            raise ConfigError("--cache_features with --weights=none and no --init_from: the cache would "
                              "hold the features of a random trunk, which nothing trains; pass "
                              f"--weights={family.weights_example} or drop --cache_features")
        if random_trunk and self.trainable_from != "all":
            raise ConfigError(f"--trainable_from={self.trainable_from} with --weights=none and no "
                              f"--init_from: the layers before {self.trainable_from} would stay random and "
                              f"frozen; use --trainable_from=all, or start from trained weights "
                              f"(--weights={family.weights_example} or --init_from=RUN)")
        if self.cache_features and self.trainable_from != family.trainable_from[0]:
            raise ConfigError(f"--cache_features with --trainable_from={self.trainable_from}: the cache "
                              f"holds a frozen trunk's features; use --trainable_from={family.trainable_from[0]} "
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
                              "(cluster and task); see docs/training.md 'Distributed training'")
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
                f"--weights={self.weights}: file not found; download {family.weights_example} and pass "
                f"--weights=/path/to/{family.weights_example}, or --weights=none to train from scratch")
        if self.weights is not None and self.init_from is None and self.variant not in family.weights_variants:
            raise ConfigError(f"--variant={self.variant} with --weights: {family.weights_name} weights only "
                              f"fit the {', '.join(family.weights_variants)} variant; pass --weights=none for "
                              f"the {self.variant} one")
        return self
