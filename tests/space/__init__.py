"""Helpers of the Space tests: synthetic "photos" with known faces, a detector that knows them, the app module.

dlib's HOG detector does not fire on the cartoon faces of ``hf_facerec.data.synthetic``, so the always-run tests use
:class:`KnownFacesDetector`: it returns the faces registered for an image's exact pixels (PNG round-trips them) and
nothing for any other image, which also makes "no face" cases exact.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from hf_facerec.data.detectors.base import Detection, FaceDetector
from hf_facerec.demo.examples import compose_faces

SPACE_DIR = Path(__file__).resolve().parents[2] / "spaces" / "facerec-demo"


def _key(rgb: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(rgb).tobytes() + str(rgb.shape).encode()).hexdigest()


class KnownFacesDetector(FaceDetector):
    """Returns the detections registered for an image's exact RGB pixels (none for unknown images)."""

    name = "known"

    def __init__(self):
        self.known: dict[str, list[Detection]] = {}

    def register(self, rgb: np.ndarray, detections: list[Detection]) -> None:
        self.known[_key(rgb)] = detections

    def _detect(self, rgb: np.ndarray) -> list[Detection]:
        return list(self.known.get(_key(rgb), []))


def synthetic_photo(detector: KnownFacesDetector, faces: list[tuple[int, int, int]], path: Path | None = None,
                    background: int = 150) -> np.ndarray:
    """A grey canvas with synthetic faces ``(identity, image index, size in px)`` side by side
    (:func:`hf_facerec.demo.examples.compose_faces`), registered in ``detector`` with their true boxes and landmarks;
    saved as PNG to ``path`` when given. Returns (H, W, 3) uint8."""
    canvas, detections = compose_faces(faces, background)
    detector.register(canvas, detections)
    if path is not None:
        Image.fromarray(canvas).save(path)
    return canvas


def register_examples(detector: KnownFacesDetector) -> None:
    """Make ``detector`` find the faces of the Space's bundled examples (as YuNet does): a detector that finds every
    face makes :func:`hf_facerec.demo.examples.example_photos` use the first candidate identities, 0, 1, 2."""
    from hf_facerec.demo import examples

    for identity in (0, 1, 2):
        for index in (0, 1):
            synthetic_photo(detector, [(identity, index, examples._SIZE)])
            for other in (0, 1, 2):
                synthetic_photo(detector, [(other, 0, 120), (identity, index, examples._SIZE)])


def load_space_module(name: str):
    """spaces/facerec-demo/app.py, registered as ``facerec_demo_app`` (the metric Spaces have app.py files too)."""
    if name != "app":
        raise ValueError(f"the Space folder holds only app.py; {name!r} lives in hf_facerec.demo")
    if "facerec_demo_app" not in sys.modules:
        spec = importlib.util.spec_from_file_location("facerec_demo_app", SPACE_DIR / "app.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["facerec_demo_app"] = module
        spec.loader.exec_module(module)
    return sys.modules["facerec_demo_app"]


# ---- hostile inputs (generated at run time; nothing binary is committed) ----------------------------


def _patch_headers(data: bytes, local_offset: int, central_offset: int, fmt: str, value: int) -> bytes:
    """Overwrite one field in every local (``PK\\x03\\x04``) and central (``PK\\x01\\x02``) header of a zip."""
    import struct

    out = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", local_offset), (b"PK\x01\x02", central_offset)):
        start = out.find(signature)
        while start != -1:
            struct.pack_into(fmt, out, start + offset, value)
            start = out.find(signature, start + 4)
    return bytes(out)


def lying_size_zip(name: str = "alice/1.png", content: bytes = b"\x89PNG" + bytes(range(256)) * 40) -> bytes:
    """A deflated one-member zip whose headers declare half the member's real size (reading it: ``Bad CRC-32``)."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, content)
    return _patch_headers(buffer.getvalue(), 22, 24, "<I", len(content) // 2)  # the uncompressed-size fields


def encrypted_zip(name: str = "alice/1.png", content: bytes = b"\x89PNG" + bytes(64)) -> bytes:
    """A one-member zip flagged as encrypted (general-purpose bit 0, as ``zip -e`` sets it)."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(name, content)
    return _patch_headers(buffer.getvalue(), 6, 8, "<H", 0x1)  # the flag fields


def deep_json(levels: int = 100_000) -> bytes:
    """``[[[...]]]`` nested ``levels`` deep (100,000 levels: a 200 KB file that makes ``json.loads`` recurse out)."""
    return b"[" * levels + b"]" * levels
