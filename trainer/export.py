"""`python -m trainer.export`: the same command as `python -m serving.export` (same flags,
same behaviour), kept under the trainer's name for scripts written against it."""

import entry  # first: sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads

from serving import flags as serving_flags

if __name__ == "__main__":
    entry.check_flags(serving_flags.define_export_flags, serving_flags,
                      check=serving_flags.check_export_values)   # before TensorFlow loads
    from serving.export import main
    entry.run(main)
