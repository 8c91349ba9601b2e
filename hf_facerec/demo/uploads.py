"""Uploads of the Space: gradio's upload records read into memory (temp files deleted after each request), and gallery
uploads:
loose images (identity from the file name) or a zip with one folder per person.

Nothing is ever extracted to disk: zip members are read into memory after the archive's central directory has been
checked for path traversal (absolute names, ``..``), too many members, encryption, and decompression bombs (declared
sizes and compression ratios), and each read is capped so a member lying about its size cannot exceed the budget
either; a member whose data does not match its header (size, checksum) refuses the zip with the member's name.

Every input kind has the same byte limit, :data:`MAX_UPLOAD_BYTES`: uploaded files (gradio's ``max_file_size`` and
:func:`read_upload`) and ``data:`` URLs sent inline in a request (sized before they are decoded).
"""

from __future__ import annotations

import base64
import binascii
import io
import lzma
import os
import re
import tempfile
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from hf_facerec.demo.operating_points import SpaceInputError

#: Limits of a gallery zip: members, total uncompressed bytes, and compression ratio of any member.
MAX_ZIP_MEMBERS = 500
MAX_ZIP_BYTES = 200 * 2**20
MAX_ZIP_RATIO = 100
#: Images in one gallery (loose files or zip members).
MAX_GALLERY_IMAGES = 200
#: Bytes of one uploaded file or inline ``data:`` URL (decoded): the Space's 20 MB limit, for every input kind.
MAX_UPLOAD_BYTES = 20 * 2**20
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".pgm", ".ppm"}
_KEPT: set[Path] = set()


def keep_uploads(paths) -> None:
    """Never delete these files in :func:`delete_uploads`: gradio's cache is content-addressed, so an upload equal to a
    component's default value (an example photo) is that very file."""
    _KEPT.update(Path(p).resolve() for p in paths)


def _upload_root() -> Path:
    """Where gradio keeps uploads (``$GRADIO_TEMP_DIR``, default ``<tmp>/gradio``)."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


def read_upload(payload, what: str = "the file", max_bytes: int = MAX_UPLOAD_BYTES) -> tuple[str, bytes]:
    """``(original name, bytes)`` of an upload, read into memory (:func:`delete_uploads` removes the temp file).

    Args:
        payload: a path, a gradio ``FileData`` dict (``{"path", "orig_name", "url", ...}``, what handlers get with
            ``preprocess=False``) or a ``data:`` URL.
        max_bytes: the most bytes accepted, for a file and for a ``data:`` URL alike (checked before decoding).

    Raises:
        SpaceInputError: nothing given, a file or data URL over ``max_bytes``, garbled base64, or an unreadable file.
    """
    name = None
    if isinstance(payload, Mapping):
        url = payload.get("url") or ""
        name = payload.get("orig_name")
        if payload.get("path") is None and url.startswith("data:"):
            return name or "upload", _decode_data_url(url, what, max_bytes)
        payload = payload.get("path")
    elif isinstance(payload, str) and payload.startswith("data:"):
        return "upload", _decode_data_url(payload, what, max_bytes)
    if not payload:
        raise SpaceInputError(f"Please add {what}.")
    path = Path(payload)
    try:
        if path.stat().st_size > max_bytes:
            raise SpaceInputError(f"{what.capitalize()} is larger than {max_bytes // 2**20} MB.")
        return name or path.name, path.read_bytes()
    except OSError as err:
        raise SpaceInputError(f"Could not read {what}; please upload it again.") from err


def delete_uploads(*payloads) -> None:
    """Delete the temporary files of upload records (``FileData`` dicts, paths, or lists of them) once a request is
    done, whatever its outcome. Called after, not while, reading: gradio's cache is content-addressed, so the same
    photo given twice in one request is one file. Only files under gradio's upload folder are touched."""
    for payload in payloads:
        if isinstance(payload, (list, tuple)):
            delete_uploads(*payload)
        elif isinstance(payload, Mapping) and payload.get("path"):
            _delete_upload(Path(payload["path"]))
        elif isinstance(payload, (str, os.PathLike)) and not str(payload).startswith("data:"):
            _delete_upload(Path(payload))


def _decode_data_url(url: str, what: str, max_bytes: int) -> bytes:
    """The bytes of a base64 ``data:`` URL, refused by its length BEFORE decoding when it could exceed ``max_bytes``."""
    header, comma, text = url.partition(",")
    if (len(text) * 3) // 4 > max_bytes:  # 4 base64 characters carry 3 bytes: an upper bound, no allocation
        raise SpaceInputError(f"{what.capitalize()} is larger than {max_bytes // 2**20} MB.")
    try:
        if not comma or not header.endswith(";base64"):
            raise ValueError("not a base64 data URL")
        return base64.b64decode("".join(text.split()), validate=True)  # as hf_facerec.data.images reads data URIs
    except (binascii.Error, ValueError) as err:
        raise SpaceInputError(f"{what.capitalize()} arrived garbled; please upload it again.") from err


def _delete_upload(path: Path) -> None:
    """Delete an uploaded file and its (then empty) per-upload folder, only inside gradio's upload root."""
    root = _upload_root()
    try:
        resolved = path.resolve()
        if root not in resolved.parents or resolved in _KEPT:
            return
        resolved.unlink(missing_ok=True)
        if resolved.parent != root and not any(resolved.parent.iterdir()):
            resolved.parent.rmdir()
    except OSError:
        pass  # already gone or shared with a concurrent upload: the cache sweep removes it


def identity_from_filename(name: str) -> str:
    """``alice_2.jpg`` / ``alice-02.png`` / ``alice 3.jpg`` -> ``alice``; ``bob.jpg`` -> ``bob``."""
    stem = PurePosixPath(name.replace("\\", "/")).stem
    return re.sub(r"[ _-]*\(?\d+\)?$", "", stem) or stem


def _safe_member_name(name: str) -> PurePosixPath | None:
    """The member's relative path, or None for a name that tries to leave the archive (absolute, ``..``, drive)."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", name):
        return None
    return path


#: What reading a damaged member raises: a CRC or header mismatch, corrupt deflate / bzip2 / LZMA data, a truncated
#: stream, or a compression method zipfile does not implement.
_MEMBER_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, ValueError, NotImplementedError)


def _read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, size: int) -> bytes:
    """At most ``size`` bytes of a member; SpaceInputError naming it when it is encrypted or damaged."""
    if member.flag_bits & 0x1:  # zipfile would raise a bare RuntimeError asking for a password
        raise SpaceInputError(f"The zip member {member.filename} is password-protected; upload a zip without a password.")
    try:
        with archive.open(member) as stream:
            return stream.read(size)
    except _MEMBER_ERRORS as err:
        raise SpaceInputError(f"The zip member {member.filename} is damaged (its data does not match its recorded size "
                              "and checksum, or does not decompress); refused.") from err


def read_gallery_zip(data: bytes) -> tuple[list[tuple[str, bytes]], list[str]]:
    """``([(identity, image bytes)], [skipped member messages])`` of a zip whose folders are the identities.

    Members at the archive root take their identity from the file name. Hidden files, ``__MACOSX`` and non-image
    suffixes are skipped quietly; traversal names are skipped and reported.

    Raises:
        SpaceInputError: not a zip, too many members, a possible zip bomb, an encrypted or damaged image member (named),
            or no image at all.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise SpaceInputError("The gallery file is not a valid zip archive.") from err
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > MAX_ZIP_MEMBERS:
            raise SpaceInputError(f"The zip has {len(members)} files; at most {MAX_ZIP_MEMBERS}, please.")
        declared = sum(m.file_size for m in members)
        ratios = [m.file_size / max(m.compress_size, 1) for m in members]
        if declared > MAX_ZIP_BYTES or (ratios and max(ratios) > MAX_ZIP_RATIO):
            raise SpaceInputError("The zip expands to far more than it weighs (a possible zip bomb); refused.")
        items, skipped, budget = [], [], MAX_ZIP_BYTES
        for member in members:
            path = _safe_member_name(member.filename)
            if path is None:
                skipped.append(f"{member.filename}: path leaves the archive")
                continue
            if any(p.startswith(".") or p == "__MACOSX" for p in path.parts) or path.suffix.lower() not in _IMAGE_SUFFIXES:
                continue
            if len(items) == MAX_GALLERY_IMAGES:
                skipped.append(f"images after the first {MAX_GALLERY_IMAGES}")
                break
            content = _read_member(archive, member, min(member.file_size, budget) + 1)  # +1: a member lying about its size
            if len(content) > member.file_size or len(content) > budget:
                raise SpaceInputError("A zip member is larger than declared (a possible zip bomb); refused.")
            budget -= len(content)
            identity = path.parts[-2] if len(path.parts) >= 2 else identity_from_filename(path.name)
            items.append((identity, content))
    if not items:
        raise SpaceInputError("The zip holds no images (JPEG, PNG, ...): put one folder per person inside.")
    return items, skipped


def gallery_items(uploads: Sequence) -> tuple[list[tuple[str, bytes]], list[str]]:
    """Gallery ``(identity, bytes)`` items of several uploads (images and/or zips).

    Raises:
        SpaceInputError: nothing uploaded, too many images, or a bad zip.
    """
    if not uploads:
        raise SpaceInputError("The gallery is empty: upload face images named after the person or a zip with one folder per person.")
    items, skipped = [], []
    for upload in uploads:
        name, data = read_upload(upload, "a gallery file")
        if name.lower().endswith(".zip") or data[:4] == b"PK\x03\x04":
            more, why = read_gallery_zip(data)
            items += more
            skipped += why
        else:
            items.append((identity_from_filename(name), data))
    if len(items) > MAX_GALLERY_IMAGES:
        raise SpaceInputError(f"The gallery has {len(items)} images; at most {MAX_GALLERY_IMAGES}, please.")
    return items, skipped
