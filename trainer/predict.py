"""`python -m trainer.predict`: the same command as `python -m serving.predict` (same flags,
same behaviour), kept under the trainer's name for scripts written against it."""

import entry  # first: sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads

from serving import flags as serving_flags
from serving.predict import main

if __name__ == "__main__":
    entry.run(main, serving_flags.define_predict_flags, serving_flags)
