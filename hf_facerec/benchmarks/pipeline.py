"""The runner's embedding pipeline: decode + detect + align in worker processes, overlapping batched
forward passes in the main process, with one progress bar for each ("align", "embed").

Where the time went before (``FaceEmbedder.__call__`` with a per-image ``preprocess``, LFW, YuNet,
MobileFaceNet, flip): everything ran serially on one process, and each 64-image batch (128 rows
with flip) allocated activations of ~90 MB per layer, above glibc's mmap threshold, so every layer
of every batch mapped fresh pages (the tens of millions of minor page faults). Here:

* :class:`AlignSpec` is the picklable recipe of a :func:`~hf_facerec.data.preprocess.build_preprocess`
  call: each worker builds its own detector once (a cv2 network cannot be pickled);
* workers (``multiprocessing`` pool, ``imap`` in order, chunks of images) return uint8 (H, W, 3)
  crops; a thread in the main process drains them into a bounded queue (the "align" bar counts
  crops as they arrive, and the pool cannot run more than a few batches ahead);
* the main process runs the embedder's own image processor and :meth:`FaceEmbedder.embed_pixel_values`
  (the no-detection path: crops are already aligned) in forward micro-batches of ``forward_batch``
  images, small enough that activations stay in reused heap memory, writing into one preallocated
  (N, D) array;
* torch in the main process gets the cores the workers leave (no oversubscription), restored after;
* on CPU the model is traced and frozen once per call (``torch.jit.freeze``: batch norms folded
  into the convolutions, weights constant): half the forward time of MobileFaceNet in eager mode,
  outputs within 2e-6 (falls back to eager when a model cannot be traced).

Same images, same processor, same model: the embeddings equal the serial path's (tested, atol 1e-5).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import queue
import sys
import warnings
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np
import torch
from tqdm.auto import tqdm

from hf_facerec.data.images import IMAGE_SOURCE_TYPES, load_rgb
from hf_facerec.data.preprocess import build_preprocess

__all__ = ["AlignSpec", "aligned_crops", "default_num_workers", "embed_aligned"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlignSpec:
    """Arguments of :func:`~hf_facerec.data.preprocess.build_preprocess`, picklable for workers.

    ``face_size`` is the model's (height, width); ``align`` ``"none"``, ``"yunet"``, ``"dlib"`` or
    ``"dlib,yunet"``; ``detector_model`` / ``policy`` as there.
    """

    face_size: tuple[int, int]
    align: str = "none"
    detector_model: str | None = None
    policy: str = "central"

    def build(self):
        """``(preprocess callable, description dict)``, as :func:`build_preprocess` returns."""
        return build_preprocess(self.face_size, self.align, self.detector_model, self.policy)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_num_workers() -> int:
    """Worker processes for alignment: the usable cores minus one for the forward passes (at least 1)."""
    return max(1, min(8, _cores() - 1))


def _crop(source, preprocess) -> tuple[np.ndarray, bool]:
    """One source -> (uint8 (H, W, 3) crop, whether no face was found); decoding as FaceEmbedder does."""
    image = load_rgb(source) if isinstance(source, IMAGE_SOURCE_TYPES) else source  # LandmarkedImage: as is
    before = getattr(preprocess, "no_face", 0)
    crop = preprocess(image)
    return np.asarray(crop, dtype=np.uint8), getattr(preprocess, "no_face", 0) != before


_WORKER_PREPROCESS = None  # one per worker process, built by _init_worker (or the error it raised)


def _init_worker(spec: AlignSpec) -> None:
    global _WORKER_PREPROCESS
    try:
        import cv2

        cv2.setNumThreads(1)  # one process per core: no thread pools fighting inside a worker
    except ImportError:
        pass
    try:
        _WORKER_PREPROCESS = spec.build()[0]
    except Exception as err:  # raised with the first task: a failing initializer makes Pool respawn forever
        _WORKER_PREPROCESS = err


def _worker_crop(source) -> tuple[np.ndarray, bool]:
    if isinstance(_WORKER_PREPROCESS, Exception):
        raise _WORKER_PREPROCESS
    return _crop(source, _WORKER_PREPROCESS)


def aligned_crops(
    sources: Sequence, preprocess: AlignSpec | Callable, num_workers: int = 0, chunksize: int = 8
) -> Iterator[tuple[np.ndarray, bool]]:
    """Yield ``(uint8 (H, W, 3) crop, no_face)`` for each source, in order.

    ``num_workers=0`` (or a plain callable ``preprocess``, which may hold an unpicklable detector)
    runs in this process; otherwise a pool of ``num_workers`` processes, each building ``preprocess``
    (an :class:`AlignSpec`) once, aligns ``chunksize`` images per task. Errors (an unreadable
    image: :class:`~hf_facerec.data.images.InvalidImageError` naming the file) are raised here.
    """
    if num_workers == 0 or not isinstance(preprocess, AlignSpec):
        built = preprocess.build()[0] if isinstance(preprocess, AlignSpec) else preprocess
        for source in sources:
            yield _crop(source, built)
        return
    with _main_without_missing_file():
        pool = _context().Pool(num_workers, initializer=_init_worker, initargs=(preprocess,))
    with pool:
        yield from pool.imap(_worker_crop, sources, chunksize=chunksize)


@contextlib.contextmanager
def _main_without_missing_file():
    """Hide ``__main__.__file__`` while workers start when it names no file (code piped to ``python -``
    has ``<stdin>``): forkserver/spawn children would try to re-run it; the workers need only this module."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None or os.path.isfile(path) or getattr(main, "__spec__", None) is not None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


def _context():
    """forkserver where there is one: workers fork from a clean server process (imports done once),
    never from this one, whose OpenMP / OpenCV thread pools a plain fork leaves locked (seen hanging)."""
    from multiprocessing import get_all_start_methods

    if "forkserver" not in get_all_start_methods():
        return get_context("spawn")
    context = get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _prefetch(crops: Iterator, bar, depth: int) -> Iterator:
    """Drain ``crops`` on a thread into a queue of at most ``depth`` items, ticking ``bar`` per crop,
    so alignment runs (and its bar moves) while the main thread is inside a forward pass."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    done, stop = object(), threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def drain():
        try:
            for item in crops:
                if not put(item):
                    break
                bar.update(1)
        except BaseException as err:  # re-raised in the consumer, with the file named by the worker
            put(err)
        finally:
            crops.close()  # the consumer stopped early or all is done: close the pool
        put(done)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    try:
        while (item := items.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


class _Features(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).features


def _frozen(embedder, example: torch.Tensor):
    """A shallow copy of ``embedder`` whose ``_features`` hook runs the traced + frozen model, or
    ``embedder`` itself (not a plain FaceEmbedder on CPU, or the model does not trace)."""
    from hf_facerec.embedding import FaceEmbedder

    if type(embedder) is not FaceEmbedder or embedder.device.type != "cpu":  # e.g. ONNX: its own _features
        return embedder
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings of the models' constant shape checks
            frozen = torch.jit.freeze(torch.jit.trace(_Features(embedder.model).eval(), example, check_trace=False))
    except Exception as err:  # any model that does not trace still embeds, in eager mode
        logger.info("embedding in eager mode: %s does not trace (%s)", type(embedder.model).__name__, err)
        return embedder
    fast = copy.copy(embedder)
    fast._features = frozen
    return fast


@torch.no_grad()
def embed_aligned(
    embedder,
    sources: Sequence,
    preprocess: AlignSpec | Callable,
    *,
    num_workers: int | None = None,
    batch_size: int | None = None,
    forward_batch: int = 16,
    progress: bool | None = None,
    jit: bool = True,
) -> tuple[np.ndarray, int]:
    """Align ``sources`` (in workers) and embed the crops with ``embedder`` (in this process).

    Args:
        embedder: a :class:`~hf_facerec.FaceEmbedder`; its ``image_processor`` and
            :meth:`~hf_facerec.FaceEmbedder.embed_pixel_values` (flip TTA) are used, never its detector.
        sources: (N,) paths, encoded bytes, images or :class:`~hf_facerec.data.preprocess.LandmarkedImage`.
        preprocess: an :class:`AlignSpec` (built in each worker) or a callable (run in this process).
        num_workers: alignment processes; ``None`` = :func:`default_num_workers`, 0 = in this process.
        batch_size: crops per image-processor call (default ``embedder.batch_size``).
        forward_batch: images per forward pass (flip doubles the rows): small on purpose, see the module doc.
        progress: show the "align" and "embed" bars (default: more than 4 batches).
        jit: on CPU, run a traced + frozen copy of the model (see the module doc); False: eager.
    Returns:
        ``(embeddings (N, D) float32 unit rows, number of images where no face was found)``.
    """
    n = len(sources)
    if n == 0:
        raise ValueError("No images to embed")
    workers = default_num_workers() if num_workers is None else int(num_workers)
    batch_size = batch_size or embedder.batch_size
    show = progress if progress is not None else n > 4 * batch_size
    threads = torch.get_num_threads()
    if workers > 0:
        torch.set_num_threads(max(1, _cores() - workers))  # the workers have the other cores
    align_bar = tqdm(total=n, desc="align", unit="img", disable=not show)
    embed_bar = tqdm(total=n, desc="embed", unit="img", disable=not show)
    output: np.ndarray | None = None
    no_face, start, pending = 0, 0, []
    try:
        crops = _prefetch(aligned_crops(sources, preprocess, workers), align_bar, depth=4 * batch_size)
        for index, (crop, missed) in enumerate(crops):
            pending.append(crop)
            no_face += missed
            if len(pending) == batch_size or index == n - 1:
                pixels = embedder.image_processor(images=pending, return_tensors="pt")["pixel_values"]
                if output is None and jit:
                    embedder = _frozen(embedder, pixels[:forward_batch])
                for lo in range(0, len(pending), forward_batch):
                    rows = embedder.embed_pixel_values(pixels[lo : lo + forward_batch]).numpy()
                    if output is None:  # the width (D, 2D with flip concat) is known after the first pass
                        output = np.empty((n, rows.shape[1]), dtype=np.float32)
                    output[start + lo : start + lo + len(rows)] = rows
                    embed_bar.update(len(rows))
                start += len(pending)
                pending = []
    finally:
        torch.set_num_threads(threads)
        align_bar.close()
        embed_bar.close()
    return output, no_face
