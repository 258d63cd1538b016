"""python -m trainer --flagfile=gpu.flags   (or cpu.flags; any flag overrides the file)

Trains the DEX apparent-age model (VGG-Face transfer) on the shards written by
`python -m ingest`, streaming them through records.make_dataset. Writes
checkpoints, best.keras, history.csv, flags.txt and TensorBoard logs to
--model_dir, resumes there after a crash, and evaluates best.keras on the test
split at the end (see trainer.evaluate).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from trainer import flags as trainer_flags  # noqa: E402

trainer_flags.define_train_flags()
flags.adopt_module_key_flags(trainer_flags)  # so --help lists them


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; every option is a --flag")
    f = trainer_flags.FLAGS
    trainer_flags.quiet_logs()
    try:
        trainer_flags.check_train_flags(f)
    except trainer_flags.flags.ValidationError as e:
        sys.exit(f"error: {e}")
    if f.model_dir is None:
        f.model_dir = trainer_flags.default_model_dir()

    import model
    import records
    from trainer import train
    from trainer.run_dir import RunDirError

    try:
        if f.dry_run:
            train.dry_run(f)
            return
        run_dir = train.train(f)
    except (records.DataError, RunDirError, model.WeightsError, FloatingPointError) as e:
        sys.exit(f"error: {e}")
    if f.evaluate and run_dir:
        from trainer import evaluate
        evaluate.evaluate_run(run_dir)


if __name__ == "__main__":
    app.run(main)
