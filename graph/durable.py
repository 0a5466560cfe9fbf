"""Making a rename or a new file survive a crash: after ``os.replace`` or
creating a file, the directory entry itself must reach the disk."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """fsync the directory, so entries created, renamed or removed in it
    are durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
