"""How a source names its synthetic samples (`python -m ingest.sample --dataset NAME`).

A source module lists its samples in `SAMPLES`: each a `Sample` that points, by module
name, at the code that writes it and at the counts default ingest reports on it. The
writers are imported only when a sample is made (they need numpy, PIL, scipy; the
source modules and ingest's flags do not).

A writer module offers `write_sample(name, out, n, seed, workers, face_px) -> rows` and
`sample_counts(name, n, seed) -> dict` (entries, cleaning [{step, removed, remaining}],
kept, skipped {reason: count}, written) and `describe(name, out, counts) -> str`, the
line `python -m ingest.sample` prints.
"""

from __future__ import annotations

import dataclasses
import importlib
import os


@dataclasses.dataclass(frozen=True)
class Sample:
    name: str          # the --dataset value
    help: str          # its part of --dataset's help
    writer: str        # the module that writes it and states its counts
    src: str = ""      # what --src names inside the written folder ("": the folder itself)

    def _module(self):
        return importlib.import_module(self.writer)

    def write(self, out: str, n: int, seed: int = 0, workers: int | None = None,
              face_px: tuple[int, int] | None = None) -> list[dict]:
        """Write the sample into the folder `out`; returns its ground-truth rows."""
        return self._module().write_sample(self.name, out, n, seed, workers, face_px)

    def expected(self, n: int, seed: int = 0) -> dict:
        """What default `python -m ingest` reports on the sample of `n` rows."""
        return self._module().sample_counts(self.name, n, seed)

    def describe(self, out: str, counts: dict) -> str:
        return self._module().describe(self.name, out, counts)

    def src_of(self, out: str) -> str:
        """The --src that ingests the sample written into `out`."""
        return os.path.join(out, self.src) if self.src else out
