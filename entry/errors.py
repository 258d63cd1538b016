"""The project's error base under its start-up name: `entry.errors.ProjectError` is
`errors.ProjectError` (and so are `disk_problem`, `disk_target`), defined in the
`errors` package."""

from errors import DISK_ERRNOS, ProjectError, disk_problem, disk_target  # noqa: F401

__all__ = ["DISK_ERRNOS", "ProjectError", "disk_problem", "disk_target"]
