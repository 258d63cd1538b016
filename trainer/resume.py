"""Whether a run directory may be continued: the checks `train.open_run` (and
`train.dry_run`) make against the run's run.json before training resumes.

A run continues only with the same network and meaning of its saved state
(`config.FIXED_ON_RESUME`), the same validation data set and the same training
sources; `training_identity` is what run.json keeps of each source. A setting an
older run.json does not record counts as compatible.
"""

from __future__ import annotations

import os

from records.identity import data_identity, differences
from storage.run_dir import RunDir, RunDirError
from trainer import checkpoints
from trainer.config import FIXED_ON_RESUME, TrainConfig


def _shown(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def check_run_dir(run: RunDir, config: TrainConfig, manifest: dict, sources: list[dict] = ()) -> bool:
    """True when the run directory holds a checkpoint to continue from (found from the
    checkpoint files, not the index alone). A run that would continue with another
    network, another meaning of its saved state (FIXED_ON_RESUME), another validation
    data set (check_same_data) or other training data (check_same_sources: `sources`
    are their manifests), compared with its run.json, is refused; a setting an older
    run.json does not record counts as compatible."""
    has_checkpoint = bool(checkpoints.numbers(run.checkpoints))
    if has_checkpoint and not config.resume:
        raise RunDirError(f"{run.path} already holds a run; pass --resume to continue it or "
                          f"choose a new --model_dir")
    if has_checkpoint:
        before = run.read_info(missing_ok=True)
        for name in FIXED_ON_RESUME:
            now = getattr(config, name)
            if name in before and before[name] != now:
                raise RunDirError(f"--{name}={_shown(now)} but the run in {run.path} was trained "
                                  f"with --{name}={_shown(before[name])}; use the same value or a new --model_dir")
        check_same_data(run, before, config.records, manifest)
        check_same_sources(run, before, config, sources)
    return has_checkpoint


def check_same_data(run: RunDir, before: dict, records_dir: str, manifest: dict) -> None:
    """A resumed run trains and selects its best model on the data set it started with:
    the same --records path holding the same shards (a byte-identical re-ingest is the same)."""
    path = os.path.abspath(records_dir)
    if "records" in before and before["records"] != path:
        raise RunDirError(f"--records={records_dir} but the run in {run.path} was trained on "
                          f"{before['records']}; pass --records={before['records']} or a new --model_dir")
    if "data" in before and before["data"] != data_identity(manifest):
        raise RunDirError(f"--records={records_dir}: not the data set the run in {run.path} started with "
                          f"({'; '.join(differences(before['data'], data_identity(manifest)))}); "
                          f"restore that data set or train into a new --model_dir")


def check_same_sources(run: RunDir, before: dict, config: TrainConfig, sources: list[dict] = ()) -> None:
    """A resumed run keeps mixing the training sources it started with: the same paths
    holding the same training shards (`sources`: their manifests, in --records order)."""
    now = [os.path.abspath(d) for d in config.sources]
    if "train_records" in before and before["train_records"] != now:
        raise RunDirError(f"--records={','.join(config.sources)} but the run in {run.path} was trained "
                          f"on {','.join(before['train_records'])}; pass the same sources or a new --model_dir")
    if "train_data" not in before or not sources:
        return
    for directory, was, manifest in zip(config.sources, before["train_data"], sources):
        is_now = training_identity(manifest)
        if was != is_now:
            raise RunDirError(f"--records: {directory} is not the training data the run in {run.path} started "
                              f"with ({'; '.join(differences({'train': was}, {'train': is_now}))}); restore "
                              f"that data set or train into a new --model_dir")


def training_identity(manifest: dict) -> list[str]:
    """The sha256 of each training shard of a source, in order (what run.json keeps)."""
    return data_identity(manifest)["train"]
