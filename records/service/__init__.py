"""The training input pipeline on tf.data service: a dispatcher and N workers (CPU
hosts) run read -> shuffle -> decode -> augment -> batch, and stream the batches to
every replica of the trainer.

- `epoch_dataset`: one epoch of the training pipeline as a *finite* dataset, built
  from the same pieces as `records.reader.make_dataset` (`open_split`,
  `decode_batches`, `pipeline_options`). Under `processing_mode="distributed_epoch"`
  the dispatcher hands each shard file to one worker, so each record is produced
  once per epoch while no worker is lost.
- `distribute`: that dataset for every replica of a `tf.distribute` strategy; all
  replicas of all trainer processes join the same job (one job per epoch).
- `check_address`: a TCP connect with a deadline. `tf.data.experimental.service.distribute`
  retries registration with a dead dispatcher forever; this fails in one line.
- `run_epoch`: the consumer side of an epoch with a deadline. tf.data service can
  silently drop the records a lost worker held, or block on it; `run_epoch` counts
  what arrived against the manifest's count and raises `EpochTimeout` when the
  epoch does not end within its bound, naming what was lost (`lost_server`: the
  dispatcher when its address no longer accepts a connection, else a worker).

The servers are started with `python -m records.service dispatcher|worker`.
"""

# The pipeline imports TensorFlow; load it only when asked, so the server commands
# (records.service.__main__) reject a bad address before TensorFlow's import and logs.
_PIPELINE = ("PROCESSING_MODE", "SERVICE_CYCLE", "EpochReport", "EpochTimeout", "count_records",
             "distribute", "epoch_dataset", "job_name", "lost_server", "run_epoch", "run_name")
_ADDRESS = ("CONNECT_TIMEOUT_S", "ServiceError", "check_address", "parse_address")
__all__ = list(_PIPELINE + _ADDRESS)


def __getattr__(name):
    if name in _PIPELINE:
        from records.service import pipeline
        return getattr(pipeline, name)
    if name in _ADDRESS:
        from records.service import address
        return getattr(address, name)
    raise AttributeError(f"module 'records.service' has no attribute {name!r}")
