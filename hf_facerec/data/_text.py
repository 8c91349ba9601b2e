"""The one decoder of the package's text data files (pair lists, CSVs): UTF-8, BOM accepted, errors naming the line.

Excel writes CSVs with a UTF-8 byte-order mark and "Unicode text" as UTF-16 with one; both are decoded. Anything
else must be UTF-8: there is no silent Latin-1 fallback (a mis-decoded name would point at the wrong image), so a
Latin-1 file is refused with the file, line and byte offset of the first undecodable byte.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path

__all__ = ["TextFileError", "read_text"]


class TextFileError(ValueError):
    """A text data file is not UTF-8 (or BOM-marked UTF-16); the message names the file, line and byte offset."""


def read_text(path: str | os.PathLike) -> str:
    """The text of ``path``: UTF-8 (a leading BOM dropped) or UTF-16 with a BOM.

    Raises:
        TextFileError: other bytes, e.g. Latin-1 ``é`` (0xe9); the message names ``path:line`` and the offset.
    """
    data = Path(path).read_bytes()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding, start = "utf-16", 0  # the codec reads the BOM to pick the byte order
    else:
        encoding, start = "utf-8", len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[start:].decode(encoding)
    except UnicodeDecodeError as error:
        offset = start + error.start
        line = data[start:offset].decode(encoding, "replace").count("\n") + 1  # only on this error path
        raise TextFileError(
            f"{path}:{line}: not {encoding.upper()} text (byte 0x{data[offset]:02x} at offset {offset}); "
            "save the file as UTF-8"
        ) from None
