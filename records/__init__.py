"""records: the TFRecord contract and its streaming reader: the record schema
(`records.schema`) and frames (`records.wire`), the manifest, what makes two data sets
the same (`records.identity`), the sharded writer, the reader with its augmentation,
the tf.data service (`records.service`) and `python -m records inspect/verify`.

`records.load(directory, split, batch_size)` is the public reader: a `tf.data.Dataset`
of (image, labels) batches, one pass over a split (`records.reader.load`)."""

__all__ = ["read_manifest", "load", "make_dataset", "make_mixed_dataset", "distribute"]


def __getattr__(name):
    # Nothing loads with the package: `python -m records` first runs entry's check that
    # the dependencies are importable (numpy included), then imports the manifest.
    if name == "read_manifest":
        from records import manifest
        return getattr(manifest, name)
    # The reader imports TensorFlow; load it only when asked, so `import records.schema`
    # stays light for ingest's decode worker processes.
    if name in ("load", "make_dataset", "make_mixed_dataset", "distribute"):
        from records import reader
        return getattr(reader, name)
    raise AttributeError(f"module 'records' has no attribute {name!r}")
