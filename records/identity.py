"""What makes two data sets the same: the sha256 of every shard, split by split.

A manifest also holds when it was written and with which flags, so two
byte-identical ingests have different manifest files but the same identity.
The trainer records a run's identity in run.json (a resumed run must train on
the same data) and the feature cache keys on it (a cache is valid exactly for
the shards it was computed from).
"""

from __future__ import annotations


def data_identity(manifest: dict) -> dict[str, list[str]]:
    """{split: [sha256 of each shard, in order]} of a checked manifest."""
    return {split: [shard["sha256"] for shard in entry["shards"]]
            for split, entry in sorted(manifest["splits"].items())}


def differences(before: dict, now: dict) -> list[str]:
    """The splits whose shards differ between two identities ('train: 3 shards -> 4', ...)."""
    out = []
    for split in sorted(set(before) | set(now)):
        old, new = before.get(split), now.get(split)
        if old == new:
            continue
        if old is None or new is None:
            out.append(f"{split}: {'absent' if old is None else 'present'} -> {'absent' if new is None else 'present'}")
        elif len(old) != len(new):
            out.append(f"{split}: {len(old)} shards -> {len(new)}")
        else:
            out.append(f"{split}: {sum(a != b for a, b in zip(old, new))} of {len(old)} shards differ")
    return out
