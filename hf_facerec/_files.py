"""Writing outputs safely: one up-front check of an output folder and one atomic writer, used by every report,
plot and crop the package writes (``align``'s crops and reports, ``evaluate``'s JSON, markdown and PNGs).

A failed write (read-only folder, permission denied, full disk, a folder where a file should go) raises one
:class:`OutputPathError` naming the path, never leaves a partial file behind (the data goes to a hidden
temporary file in the same folder, renamed over the target only once complete), and the CLI turns it into one
line and exit status 2. This module imports only the standard library, so every layer may use it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = ["OutputPathError", "atomic_write", "check_output_dir"]


class OutputPathError(OSError):
    """An output path that cannot be written; the message names the path and the reason (``errno`` is kept)."""

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        self.errno = errno


def _reason(error: OSError) -> str:
    return error.strerror or str(error) or type(error).__name__


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``path`` (with its parents) if needed and prove it writable by creating and removing a probe file.

    Raises:
        OutputPathError: ``path`` (or a parent) is a file, or it cannot be created or written into.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{what} {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a parent that is a file, a read-only parent, permission denied
        raise OutputPathError(f"cannot create the {what} {path}: {_reason(error)}", error.errno) from error
    probe = path / f".write-probe-{os.getpid()}"
    try:
        with open(probe, "wb") as handle:
            handle.write(b"probe")
    except OSError as error:
        raise OutputPathError(f"{what} {path} is not writable: {_reason(error)}", error.errno) from error
    finally:
        try:
            probe.unlink()
        except OSError:
            pass
    return path


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_kwargs) -> Iterator[IO]:
    """Open a hidden temporary file beside ``path`` for writing; when the block ends normally, rename it over
    ``path`` (``os.replace``: readers see the old file or the whole new one, never a part).

    On any error the temporary file is removed; an ``OSError`` (disk full, permission denied, ``path`` a
    folder, ...) is raised as :class:`OutputPathError` naming ``path``. ``mode`` is ``"w"`` or ``"wb"``;
    ``open_kwargs`` go to ``open`` (e.g. ``encoding``, ``newline``).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    if mode == "w":
        open_kwargs.setdefault("encoding", "utf-8")
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with open(partial, mode, **open_kwargs) as handle:
            yield handle
        os.replace(partial, path)
    except BaseException as error:
        try:
            partial.unlink()
        except OSError:
            pass
        if isinstance(error, OSError) and not isinstance(error, OutputPathError):
            raise OutputPathError(f"cannot write {path}: {_reason(error)}", error.errno) from error
        raise
