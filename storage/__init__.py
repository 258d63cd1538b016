"""storage: the project's files on disk, below every command: atomic writes
(`storage.atomic`), checksums (`storage.checksum`), JSON objects read back
(`storage.json_file`), output folders that are ours, built aside and swapped in
(`storage.outdir`) with one writer each (`storage.lock`), and a training run's
directory by name (`storage.run_dir`). No TensorFlow here."""
