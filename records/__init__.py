"""records: the shard schema, the sharded writer, the manifest and the streaming reader."""

from records.manifest import DataError, read_manifest  # noqa: F401
