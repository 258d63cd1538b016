"""The `check_inputs` stage of training (and of `--dry_run`): every manifest, the batch
size, --best_metric and the tf.data service address are checked before TensorFlow
builds anything, so bad input costs one line, not a traceback after minutes of model
building.

    check_data          the validation data set: image shards (not a feature cache),
                        its train and validation splits present
    check_sources       each training source's train split
    check_batch_size    a batch no larger than the training split
    check_best_metric   --best_metric=val_epsilon_error only on apparent-age data
    mixed_margins       a warning when the sources' crops have different face margins
    check_service       a dispatcher that accepts a connection (a dead one would hang)
"""

from __future__ import annotations

import records
from errors import DataError
from model import metrics
from records import service
from records.schema import KIND_FEATURES, LABEL_APPARENT, LABEL_REAL
from trainer.config import ConfigError, TrainConfig


def check_data(directory: str, splits: tuple[str, ...]) -> dict:
    """The manifest of image shards in `directory`, the shards of `splits` present."""
    manifest = records.read_manifest(directory)
    if manifest.get("kind") == KIND_FEATURES:
        raise DataError(f"--records={directory} is a feature cache, not image shards; pass the data "
                                f"set it was computed from ({manifest.get('images', 'its parent data set')}), "
                                f"and --cache_features to train on its cache")
    for split in splits:
        records.manifest.split_shards(directory, manifest, split)
    return manifest


def check_service(address: str) -> None:
    try:
        service.check_address(address)
    except service.ServiceError as e:
        raise service.ServiceError(f"--data_service={address}: {e}") from None


def mixed_margins(config: TrainConfig, sources: list[dict], manifest: dict) -> str | None:
    """A warning when the sources' faces were cropped with different margins: the model then
    sees two framings of a face, and predict crops with one (the validation set's)."""
    margins = [records.manifest.crop_margin(m) for m in sources]
    if len(set(margins)) < 2:
        return None
    each = ", ".join(f"{d} {m:g}" for d, m in zip(config.sources, margins))
    return (f"warning: the training sources were cropped with different face margins ({each}); "
            f"predict and export crop with the validation set's {records.manifest.crop_margin(manifest):g}. "
            f"Re-ingest with one --margin where the source has face boxes, if that is not what you want")


def check_batch_size(config: TrainConfig, manifest: dict) -> None:
    """A batch larger than the training split would silently train on fewer images per step."""
    count = manifest["splits"]["train"]["count"]
    if config.batch_size > count:
        raise DataError(f"--batch_size={config.batch_size} is larger than the {count}-record training "
                                f"split of {config.records}; use --batch_size={count} or less")


EPSILON_METRIC = metrics.val(metrics.EPSILON_ERROR)     # --best_metric=val_epsilon_error


def no_spread(config: TrainConfig, why: str = "") -> ConfigError:
    """The one line for --best_metric=val_epsilon_error on validation data without spreads."""
    return ConfigError(f"--best_metric={EPSILON_METRIC}: the {config.validation_split} split of {config.records} "
                       f"has no face with an apparent-age spread (age_std > 0){why}; choose --best_metric=val_mae, "
                       f"or --validation_records with apparent-age spreads such as APPA-REAL")


def check_best_metric(config: TrainConfig, manifest: dict) -> None:
    """--best_metric=val_epsilon_error needs faces with a spread, which only apparent-age
    labels have: a data set whose manifest says its label is the real age (or says
    nothing, schema version 1) is refused here. An apparent-age data set is taken at its
    word until the first validation pass (`run_epochs` checks the metric is there)."""
    label = manifest.get("label", LABEL_REAL)       # schema version 1: IMDB-WIKI's real ages
    if config.best_metric == EPSILON_METRIC and label != LABEL_APPARENT:
        raise no_spread(config, f": its manifest's label is {label!r}")


def check_sources(config: TrainConfig) -> list[dict]:
    """The manifest of every training source, its train split checked."""
    return [check_data(directory, ("train",)) for directory in config.sources]


def train_counts(manifests: list[dict]) -> list[int]:
    return [m["splits"]["train"]["count"] for m in manifests]


def steps_per_epoch(config: TrainConfig, manifests: list[dict]) -> int:
    """--steps_per_epoch, or one pass: the sources' training records together / batch."""
    return config.steps_per_epoch or max(1, sum(train_counts(manifests)) // config.batch_size)


def check_inputs(config: TrainConfig) -> tuple[dict, list[dict]]:
    """The data checks `train` and `dry_run` share, before anything is built: the
    validation data set's manifest and every training source's (a warning when their
    margins differ), and the tf.data service's address (a dead dispatcher would hang
    registration)."""
    manifest = check_data(config.records, ("train", config.validation_split))
    check_batch_size(config, manifest)
    check_best_metric(config, manifest)
    sources = check_sources(config)
    margins = mixed_margins(config, sources, manifest)
    if margins:
        print(margins, flush=True)
    if config.data_service:
        check_service(config.data_service)
    return manifest, sources
