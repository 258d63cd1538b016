"""`ProjectError`: bad input a user can fix (a missing file, a wrong flag, a stale run).

Every such error of the project derives from it (`records.DataError`,
`trainer.run_dir.RunDirError`, `model.WeightsError`, `trainer.flags.ConfigError`,
`trainer.train.TrainingDiverged`), and its message is one line naming the thing and
the fix; `entry.run` prints it as `error: ...` and exits 1. No TensorFlow here.
"""


class ProjectError(Exception):
    """One-line, user-fixable error: the message names the file or flag and the fix."""
