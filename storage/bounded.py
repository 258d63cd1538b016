"""Reading a small input file whole, bounded before a byte is read: a FIFO or device
given where a file belongs would block forever or never end (`/dev/zero`), and a file
larger than what it could be is refused by its size, not by running out of memory."""

from __future__ import annotations

import os
import stat


class UnboundedFile(ValueError):
    """A file that is not a regular file, or larger than its bound; the message says
    which (without the path)."""


def read_bounded(path: str, limit: int, follow_links: bool = True) -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them: OSError when it
    cannot be opened (or is a link and `follow_links` is False), UnboundedFile when it is
    not a regular file or is larger.  Opened without blocking (a FIFO's open would wait
    for a writer) and checked by fstat."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags if follow_links else flags | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnboundedFile("not a regular file (a FIFO, device or directory); it was not read")
        if st.st_size > limit:
            raise UnboundedFile(f"{st.st_size} bytes, more than the {limit} it may have; it was not read")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UnboundedFile(f"more than the {limit} bytes it may have")
    return data
