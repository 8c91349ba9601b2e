"""Embedding identity and caching for the benchmark runner: image keys, model fingerprints, the
``.npy`` embedding cache, and :func:`embed_images` which ties them to a :class:`~hf_facerec.FaceEmbedder`.

A cache entry is keyed by (model fingerprint = hash of config + weights + image-processor config,
image keys, flip mode, preprocessing description), so any change that can change an embedding is
another entry, and a rerun with the same settings embeds nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
import numpy as np
import torch

from hf_facerec._files import atomic_write
from hf_facerec.data.preprocess import LandmarkedImage

__all__ = ["EmbeddingCache", "array_checksum", "embed_images", "image_key", "model_fingerprint", "unique_pair_images"]

_CACHE_FORMAT = 2  # bump when the cached arrays' meaning changes (2: entries carry a checksum)
_CHECKSUM_FIELD = "array_sha256"  # in the .json sidecar; load() strips it from the metadata it returns

logger = logging.getLogger(__name__)


# ---- keys and fingerprints ----------------------------------------------------------------------


def _digest(*parts: bytes | str) -> str:
    h = hashlib.blake2b(digest_size=20)
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def _config_json(obj) -> str:
    """Stable JSON of a config/processor: private and version fields (``_name_or_path`` differs
    between a model object and the same model loaded from disk) are left out."""
    data = obj.to_dict()
    kept = {k: v for k, v in data.items() if not k.startswith("_") and k != "transformers_version"}
    return json.dumps(kept, sort_keys=True, default=str)


def model_fingerprint(model: torch.nn.Module, image_processor=None) -> str:
    """Hash of the model config, every state-dict tensor (name, dtype, shape, bytes) and the image
    processor config: two models embed identically iff their fingerprints match (up to the code).

    Hashes ~1 GB/s, i.e. about a second for a ViT-L; negligible next to embedding a benchmark.
    """
    h = hashlib.blake2b(digest_size=20)
    if hasattr(model, "config"):
        h.update(_config_json(model.config).encode())
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        h.update(tensor.reshape(-1).view(torch.uint8).numpy())  # raw bytes, any dtype (bf16 included)
    if image_processor is not None:
        h.update(_config_json(image_processor).encode())
    return h.hexdigest()


def image_key(source) -> str:
    """Identity of an image source: ``path|size|mtime_ns`` (absolute path) or ``sha1:<hex>`` of bytes;
    a :class:`LandmarkedImage` adds its landmarks."""
    if isinstance(source, LandmarkedImage):
        return f"{image_key(source.path)}|{np.round(np.asarray(source.landmarks, np.float64), 3).tolist()}"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "sha1:" + hashlib.sha1(source).hexdigest()
    if isinstance(source, (str, os.PathLike)):
        path = os.path.abspath(source)
        stat = os.stat(path)
        return f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    raise ValueError(f"an image source must be a path, encoded bytes or a LandmarkedImage, got {type(source).__name__}")


def unique_pair_images(images1: Sequence, images2: Sequence) -> tuple[list, np.ndarray, np.ndarray, list[str]]:
    """:func:`hf_facerec.data.pairs.unique_images` of P pairs, with each distinct source's :func:`image_key`.

    Returns:
        ``(sources (M,), index1 (P,), index2 (P,), keys (M,))``.
    """
    from hf_facerec.data.pairs import unique_images

    sources, index1, index2 = unique_images(images1, images2)
    return sources, index1, index2, [image_key(source) for source in sources]


class EmbeddingCache:
    """``.npy`` embeddings under ``directory``, one file per key, written atomically, with a JSON
    sidecar holding what the key was made of (for humans) and a sha256 of the array.

    A file changed after it was written (edited, truncated, swapped, half-copied) fails the
    checksum or the parse: :meth:`load` logs one warning and reports a miss, so it is recomputed.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    def _path(self, key: str, suffix: str) -> Path:
        return self.directory / f"{key}{suffix}"

    def load(self, key: str, rows: int) -> tuple[np.ndarray, dict] | None:
        """The cached (rows, D) array and its metadata, or None: absent, or (with a warning)
        unreadable, of another shape, or not the array that was saved (checksum)."""
        npy, sidecar = self._path(key, ".npy"), self._path(key, ".json")
        if not npy.exists():  # never written, or a save interrupted before its array
            return None
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
            array = _read_npy(npy)
        except (OSError, ValueError, EOFError) as err:  # truncated/garbled .npy or .json, missing sidecar
            return self._stale(npy, f"unreadable ({type(err).__name__}: {err})")
        if not isinstance(meta, dict):
            return self._stale(npy, f"{sidecar.name} is not a JSON object")
        stored = meta.pop(_CHECKSUM_FIELD, None)
        if array.ndim != 2 or array.shape[0] != rows:
            return self._stale(npy, f"holds an array of shape {array.shape}, expected ({rows}, D)")
        if stored != array_checksum(array):
            return self._stale(npy, "does not match the checksum saved with it")
        return array, meta

    @staticmethod
    def _stale(npy: Path, why: str) -> None:
        logger.warning("embedding cache entry %s %s: recomputing it", npy, why)
        return None

    def save(self, key: str, array: np.ndarray, meta: dict) -> None:
        """Write ``array`` and ``meta`` (plus the array's checksum) atomically under ``key``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        meta = {**meta, _CHECKSUM_FIELD: array_checksum(array)}
        # The array last: a .npy on disk always has its sidecar. atomic_write: never a half-written file.
        with atomic_write(self._path(key, ".json")) as handle:
            handle.write(json.dumps(meta, indent=1))
        with atomic_write(self._path(key, ".npy"), "wb") as handle:
            np.save(handle, array)


def _read_npy(path: Path) -> np.ndarray:
    """``np.load`` of a .npy whose header is first checked against the file size (a garbled header
    claiming terabytes raises ValueError, not a MemoryError or a huge allocation)."""
    fmt = np.lib.format
    with open(path, "rb") as f:
        version = fmt.read_magic(f)
        if version not in ((1, 0), (2, 0)):  # np.save writes 1.0 (2.0 for huge headers)
            raise ValueError(f".npy format version {version} is not one np.save writes here")
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read_header(f)
        expected, present = int(np.prod(shape, dtype=object)) * dtype.itemsize, os.fstat(f.fileno()).st_size - f.tell()
        if dtype.hasobject:
            raise ValueError(f"holds Python objects (dtype {dtype}), not numbers")
        if expected != present:
            raise ValueError(f"header says {shape} {dtype} ({expected} bytes) but the file holds {present} bytes of data")
        f.seek(0)
        return np.load(f, allow_pickle=False)


def array_checksum(array: np.ndarray) -> str:
    """``sha256:<hex>`` of an array's dtype, shape and bytes (~20 ms for 13k x 512 float32, 27 MB).

    sha256 rather than blake2b: with the SHA extensions of current x86/ARM CPUs it runs ~2x faster.
    """
    h = hashlib.sha256(f"{array.dtype.str}|{array.shape}|".encode())
    h.update(memoryview(np.ascontiguousarray(array)).cast("B"))  # no copy for a C-contiguous array
    return "sha256:" + h.hexdigest()


def embed_images(
    embedder,
    sources: Sequence,
    keys: Sequence[str],
    preprocess,
    describe: dict,
    cache: EmbeddingCache | None,
    fingerprint: str,
    *,
    num_workers: int | None = 0,
    progress: bool | None = None,
) -> tuple[np.ndarray, dict]:
    """Embed ``sources`` through ``cache``: a hit loads the array, a miss runs the embedder once.

    Args:
        embedder: a :class:`~hf_facerec.FaceEmbedder` (its ``flip`` is part of the key).
        sources: (M,) images (paths, bytes, :class:`LandmarkedImage`); keys: their (M,) :func:`image_key`.
        preprocess: an :class:`~hf_facerec.benchmarks.pipeline.AlignSpec` (aligned in ``num_workers``
            processes) or a per-image callable run in this process (e.g. a ``build_preprocess``
            result; its integer attribute ``no_face``, when it has one, counts photos without a face).
        describe: JSON-able description of ``preprocess`` (part of the key). fingerprint: :func:`model_fingerprint`.
        num_workers, progress: see :func:`~hf_facerec.benchmarks.pipeline.embed_aligned` (``None``: one
            worker per spare core; 0: in this process).
    Returns:
        ``(embeddings (M, D) float32 unit rows, info)`` with ``info["cache"]`` = ``"hit"`` /
        ``"miss"`` / ``"off"``, ``info["n_no_face"]`` and ``info["cache_key"]``.
    """
    from .pipeline import embed_aligned

    if len(sources) != len(keys):
        raise ValueError(f"{len(sources)} sources but {len(keys)} keys")
    document = {"format": _CACHE_FORMAT, "model": fingerprint, "flip": embedder.flip, "preprocess": describe,
                "images": _digest(*keys)}
    key = _digest(json.dumps(document, sort_keys=True))
    if cache is not None:
        hit = cache.load(key, len(sources))
        if hit is not None:
            return hit[0], {"cache": "hit", "n_no_face": hit[1].get("n_no_face", 0), "cache_key": key}
    embeddings, no_face = embed_aligned(embedder, list(sources), preprocess, num_workers=num_workers, progress=progress)
    info = {"cache": "miss" if cache is not None else "off", "n_no_face": no_face, "cache_key": key}
    if cache is not None:
        cache.save(key, embeddings, {**document, "n_images": len(sources), "n_no_face": no_face})
    return embeddings, info
