"""The Space's example photos: SYNTHETIC faces (``hf_facerec.data.synthetic``, nobody's face) rendered at start-up
into a cache folder, never committed as files.

Rendering is deterministic (fixed seed and identities), so every start writes the same pixels. Only photos in which
the Space's detector finds every drawn face are offered: dlib's HOG detector misses some cartoons, and an example
that answers "no face found" would teach nothing.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from hf_facerec.data.detectors.base import Detection, FaceDetector
from hf_facerec.data.synthetic import identity_rng, image_rng, render_identity_image, sample_identity

__all__ = ["EXAMPLE_SEED", "compose_faces", "example_photos", "write_examples"]

#: Seed of the example identities (the synthetic data sets use 0; any fixed value keeps the examples stable).
EXAMPLE_SEED = 7
#: Identities tried, in order, until the detector finds enough of them.
_CANDIDATES = range(12)
_SIZE = 160


def compose_faces(faces: Sequence[tuple[int, int, int]], background: int = 150,
                  seed: int = EXAMPLE_SEED) -> tuple[np.ndarray, list[Detection]]:
    """A grey canvas with synthetic faces ``(identity, image index, size in px)`` side by side.

    Returns:
        ``(rgb (H, W, 3) uint8, [Detection])``: the true box and 5 landmarks of each drawn face, left to right.
    """
    height = max(size for _, _, size in faces) + 40
    canvas = np.full((height, sum(size + 40 for _, _, size in faces) + 40, 3), background, dtype=np.uint8)
    detections, x = [], 40
    for identity, index, size in faces:
        image, landmarks = render_identity_image(sample_identity(identity_rng(seed, identity)),
                                                 image_rng(seed, identity, index), size)
        canvas[20:20 + size, x:x + size] = image
        detections.append(Detection(box=[x, 20, x + size, 20 + size], score=0.99,
                                    landmarks=landmarks + np.array([x, 20], dtype=np.float64)))
        x += size + 40
    return canvas, detections


def example_photos(detector: FaceDetector) -> list[tuple[str, list[tuple[str, np.ndarray]], list[int]]]:
    """The Verify examples the detector can use: ``[(label, [(file name, rgb), (file name, rgb)], [face1, face2])]``.

    Up to three rows: two images of one synthetic person; two synthetic people; a two-face photo with face 2 picked.
    """
    def found(faces) -> np.ndarray | None:
        rgb, _ = compose_faces(faces)
        return rgb if len(detector.detect(rgb)) == len(faces) else None

    usable: dict[int, dict[int, np.ndarray]] = {}
    for identity in _CANDIDATES:
        usable[identity] = {i: rgb for i in (0, 1) if (rgb := found([(identity, i, _SIZE)])) is not None}
        if any(len(v) == 2 for v in usable.values()) and sum(bool(v) for v in usable.values()) >= 2:
            break
    rows = []
    same = next((i for i, v in usable.items() if len(v) == 2), None)
    if same is not None:
        rows.append(("Same synthetic person", [(f"person{same}_a.png", usable[same][0]),
                                               (f"person{same}_b.png", usable[same][1])], [0, 0]))
    singles = [(i, next(iter(v.items()))) for i, v in usable.items() if v]
    if len(singles) >= 2:
        (a, (ia, rgb_a)), (b, (ib, rgb_b)) = singles[:2]
        rows.append(("Two synthetic people", [(f"person{a}_{'ab'[ia]}.png", rgb_a),
                                              (f"person{b}_{'ab'[ib]}.png", rgb_b)], [0, 0]))
    others = [(i, item) for i, item in singles if i != same]
    if same is not None and others:
        other, (io, _) = others[0]
        pair = found([(same, 0, 120), (other, io, _SIZE)])  # largest first: face 2 is the smaller, ``same``
        if pair is not None:
            rows.append(("Two-face photo: face 2 is the person of photo 2", [(f"people{same}_{other}.png", pair),
                                                                          (f"person{same}_b.png", usable[same][1])],
                         [2, 0]))
    return rows


def _default_folder() -> Path:
    # under the system temp dir: gradio serves files from there without allowed_paths
    return Path(tempfile.gettempdir()) / "hf_facerec-space-examples"


def write_examples(detector: FaceDetector, folder: str | os.PathLike | None = None) -> tuple[list[list], list[str]]:
    """Render :func:`example_photos` as PNGs into ``folder`` (default: a folder under the system temp dir).

    Returns:
        ``(rows, labels)`` for ``gr.Examples``: rows ``[path1, path2, face1, face2]``; none when the detector finds
        no synthetic face at all.
    """
    folder = Path(folder) if folder is not None else _default_folder()
    folder.mkdir(parents=True, exist_ok=True)
    rows, labels = [], []
    for label, photos, picks in example_photos(detector):
        paths = []
        for name, rgb in photos:
            path = folder / name
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            Image.fromarray(rgb).save(partial, format="PNG")
            os.replace(partial, path)  # atomic: two Spaces starting at once never see half a file
            paths.append(str(path))
        rows.append([*paths, *picks])
        labels.append(label)
    return rows, labels
