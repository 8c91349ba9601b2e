"""The runner's worker pipeline (hf_facerec/benchmarks/pipeline.py): same embeddings as the serial
FaceEmbedder path, errors naming the file, honest "align"/"embed" bars, torch threads restored."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_facerec import FaceEmbedder, FaceRecConfig, FaceRecModel, IResNetConfig
from hf_facerec.benchmarks.pipeline import AlignSpec, aligned_crops, embed_aligned
from hf_facerec.data.images import InvalidImageError
from hf_facerec.data.synthetic import make_synthetic_faces

FACE_SIZE = (112, 96)  # (height, width): the 96x112 template, as MobileFaceNet


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    backbone = IResNetConfig(layers=[1, 1, 1, 1], hidden_sizes=[8, 8, 16, 16], image_size=list(FACE_SIZE))
    config = FaceRecConfig(backbone_config=backbone, embedding_size=8, embedding_head="linear", image_size=list(FACE_SIZE))
    return FaceRecModel(config).eval()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """11 SYNTHETIC 100x90 JPEGs (not the model's aspect: each goes through the centre crop + resize)."""
    folder = tmp_path_factory.mktemp("photos")
    faces = make_synthetic_faces(num_identities=4, images_per_identity=3, image_size=100)
    paths = []
    for i, row in enumerate(faces.select(range(11))):
        path = folder / f"{i}.jpg"
        row["image"].crop((5, 0, 95, 100)).save(path, quality=90)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("flip,workers", [("concat", 2), ("sum", 0)])
def test_same_embeddings_as_the_serial_embedder(model, photos, flip, workers):
    spec = AlignSpec(FACE_SIZE, "none")
    embedder = FaceEmbedder(model, batch_size=4, flip=flip)
    expected = embedder(photos, preprocess=spec.build()[0])  # the previous path: one process, batches of 4
    # 11 images in batches of 4, forward passes of 3: every boundary case of the batching.
    got, no_face = embed_aligned(embedder, photos, spec, num_workers=workers, batch_size=4, forward_batch=3, progress=False)
    assert got.dtype == np.float32 and got.shape == expected.shape == (11, 16 if flip == "concat" else 8)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert no_face == 0


def test_real_lfw_yunet_matches_the_serial_path(model, shared_data, shared_models):
    yunet = next((shared_models / "yunet").glob("*.onnx"))
    photos = sorted((shared_data / "lfw" / "images").rglob("*.jpg"))[:12]
    spec = AlignSpec(FACE_SIZE, "yunet", str(yunet))
    preprocess = spec.build()[0]
    embedder = FaceEmbedder(model, batch_size=8, flip="concat")
    expected = embedder(photos, preprocess=preprocess)
    got, no_face = embed_aligned(embedder, photos, spec, num_workers=2, batch_size=5, progress=False)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert no_face == preprocess.no_face == 0
    crop, missed = next(aligned_crops(photos[:1], spec, num_workers=1))
    assert crop.shape == (112, 96, 3) and crop.dtype == np.uint8 and not missed  # aligned to the template size


def test_an_unreadable_image_in_a_worker_names_the_file(model, photos, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    embedder = FaceEmbedder(model, batch_size=4)
    with pytest.raises(InvalidImageError, match="broken.jpg"):
        embed_aligned(embedder, [*photos[:5], str(broken), *photos[5:]], AlignSpec(FACE_SIZE), num_workers=2, progress=False)


def test_align_and_embed_bars_and_threads_restored(model, photos, capsys):
    torch.set_num_threads(2)
    embedder = FaceEmbedder(model, batch_size=4)
    embed_aligned(embedder, photos, AlignSpec(FACE_SIZE), num_workers=1, progress=True)
    err = capsys.readouterr().err
    assert "align: 100%" in err and "embed: 100%" in err and "11/11" in err  # two bars, counted in images
    assert torch.get_num_threads() == 2
    with pytest.raises(ValueError, match="No images"):
        embed_aligned(embedder, [], AlignSpec(FACE_SIZE))


def test_workers_start_from_code_piped_to_python_stdin():
    """`python - <<EOF` has __main__.__file__ == '<stdin>': forkserver children must not try to re-run it."""
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from hf_facerec.benchmarks.pipeline import AlignSpec, aligned_crops\n"
        "arrays = [np.full((112, 96, 3), i, dtype=np.uint8) for i in range(5)]\n"
        "crops = list(aligned_crops(arrays, AlignSpec((112, 96)), num_workers=1))\n"
        "print(len(crops), [int(c[0][0, 0, 0]) for c in crops])\n"
    )
    done = subprocess.run([sys.executable, "-"], input=code, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[0] == "5 [0, 1, 2, 3, 4]"


def test_arrays_are_decoded_by_load_rgb():
    """Arrays and PIL images go through load_rgb (the one decode path), not straight into the aligner."""
    grey = np.full((112, 96), 7, dtype=np.uint8)  # (H, W): load_rgb replicates it to 3 channels
    (crop, missed), = aligned_crops([grey], AlignSpec(FACE_SIZE), num_workers=0)
    assert crop.shape == (112, 96, 3) and crop.dtype == np.uint8 and (crop == 7).all() and not missed
