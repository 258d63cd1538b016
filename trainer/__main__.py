"""python -m trainer --flagfile=gpu.flags   (or cpu.flags; any flag overrides the file)

Trains the DEX apparent-age model (VGG-Face transfer) on the shards written by
`python -m ingest`, streaming them through records.make_dataset. Writes
checkpoints, best.keras, history.csv, flags.txt and TensorBoard logs to
--model_dir, resumes there after a crash, and evaluates best.keras on the test
split at the end, at the run's eval batch size (see trainer.evaluate).
"""

import entry  # first: sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads

from trainer import ending
from trainer import flags as trainer_flags


def main(argv):
    entry.only_flags(argv)
    config = trainer_flags.train_config()   # checked before TensorFlow loads
    trainer_flags.check_train_paths(config)
    from trainer import evaluate, train
    if trainer_flags.FLAGS.dry_run:
        train.dry_run(config)
        return
    entry.interrupt.note(f"trainer stopped; {config.model_dir} keeps the checkpoint of its last completed epoch "
                         f"(the epoch under way is lost) and the same command resumes from it")
    run_dir = train.train(config)
    if run_dir:
        entry.interrupt.note(f"trainer stopped during the final evaluation; the trained run {run_dir} is kept: "
                             f"python -m trainer.evaluate --model_dir {run_dir} writes its report")
        report = evaluate.evaluate_run(run_dir, batch_size=config.eval_batch_size) if config.evaluate else None
        print(ending.ending(run_dir, report))


if __name__ == "__main__":
    entry.run(main, trainer_flags.define_train_flags, trainer_flags)
