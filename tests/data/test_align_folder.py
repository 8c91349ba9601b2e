"""Bulk alignment (``hf-facerec align``): outputs, failure accounting, resume, workers, CLI."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hf_facerec.cli import main
from hf_facerec.data.align_folder import align_folder, list_images, parse_size


def _bad_files(src: Path) -> None:
    """Files every run must skip and count: not an image, truncated, blank (no face), ignored text."""
    (src / "bad").mkdir(parents=True, exist_ok=True)
    (src / "bad" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(src / "bad" / "full.jpg", quality=90)
    data = (src / "bad" / "full.jpg").read_bytes()
    (src / "bad" / "full.jpg").unlink()
    (src / "bad" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    Image.new("RGB", (120, 100), (128, 128, 128)).save(src / "bad" / "blank.png")
    (src / "README.txt").write_text("not an image: ignored")


@pytest.fixture
def photo_folder(tmp_path, shared_data, shared_models):
    samples = shared_data / "samples"
    src = tmp_path / "src"
    (src / "obama").mkdir(parents=True)
    (src / "biden").mkdir()
    shutil.copy(samples / "obama2.jpg", src / "obama" / "obama2.jpg")
    shutil.copy(samples / "biden.jpg", src / "biden" / "biden.jpg")
    shutil.copy(samples / "two_people.jpg", src / "two_people.jpg")
    _bad_files(src)
    onnx = sorted((shared_models / "yunet").glob("*.onnx"))
    if not onnx:
        pytest.skip("no YuNet model in ../shared/models/yunet")
    return src, onnx[0]


def _failures(dst: Path) -> dict[str, str]:
    with open(dst / "failures.csv", newline="", encoding="utf-8") as handle:
        return {row["path"]: row["kind"] for row in csv.DictReader(handle)}


def test_align_folder_counts_failures_and_resumes(photo_folder, tmp_path):
    src, onnx = photo_folder
    dst = tmp_path / "dst"
    kwargs = dict(detector_kwargs={"model_path": onnx}, workers=1, progress=False)
    report = align_folder(src, dst, **kwargs)
    assert (report.total, report.aligned, report.skipped_existing) == (6, 3, 0)
    assert report.counts() == {"invalid_image": 2, "no_face": 1, "duplicate_output": 0}
    assert report.multiple_faces == 1  # two_people.jpg
    assert _failures(dst) == {
        "bad/blank.png": "no_face",
        "bad/broken.jpg": "invalid_image",
        "bad/truncated.jpg": "invalid_image",
    }
    for rel in ("obama/obama2.jpg", "biden/biden.jpg", "two_people.jpg"):
        with Image.open(dst / rel) as crop:
            assert crop.size == (112, 112) and crop.format == "JPEG"
    summary = json.loads((dst / "align_report.json").read_text())
    assert summary["aligned"] == 3 and summary["failures"]["invalid_image"] == 2
    assert not list(dst.rglob("*.part"))

    again = align_folder(src, dst, **kwargs)  # resume: finished crops are not redone
    assert (again.aligned, again.skipped_existing, len(again.failures)) == (0, 3, 3)
    (dst / "two_people.jpg").unlink()
    assert align_folder(src, dst, **kwargs).aligned == 1
    assert align_folder(src, dst, overwrite=True, **kwargs).aligned == 3


def test_cli_with_two_workers_png_and_custom_size(photo_folder, tmp_path, capsys):
    src, onnx = photo_folder
    dst = tmp_path / "out"
    argv = ["align", str(src), str(dst), "--model-path", str(onnx), "--workers", "2", "--chunksize", "1",
            "--template", "96x112", "--size", "48x56", "--format", "png", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "3 aligned" in capsys.readouterr().out
    crops = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*.png"))
    assert crops == ["biden/biden.png", "obama/obama2.png", "two_people.png"]
    assert all(Image.open(dst / c).size == (48, 56) for c in crops)
    assert len(_failures(dst)) == 3


def test_worker_start_failure_is_raised_not_hung(photo_folder, tmp_path):
    src, _ = photo_folder
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        align_folder(
            src, tmp_path / "o", detector_kwargs={"model_path": tmp_path / "missing.onnx"}, workers=2, progress=False
        )


def test_dlib_backend_offline_counts_bad_files_and_duplicates(tmp_path):
    """Runs without ../shared: dlib's model comes from PyPI; no image here has a face."""
    src = tmp_path / "src"
    _bad_files(src)
    Image.new("RGB", (90, 90), (10, 10, 10)).save(src / "bad" / "blank.jpg")  # same output name as blank.png
    dst = tmp_path / "dst"
    assert main(["align", str(src), str(dst), "--detector", "dlib", "--workers", "1", "--no-progress"]) == 0
    assert _failures(dst) == {
        "bad/blank.jpg": "no_face",
        "bad/blank.png": "duplicate_output",
        "bad/broken.jpg": "invalid_image",
        "bad/truncated.jpg": "invalid_image",
    }
    summary = json.loads((dst / "align_report.json").read_text())
    assert summary["total"] == 4 and summary["aligned"] == 0


def test_argument_errors(tmp_path, capsys):
    assert main(["align", str(tmp_path / "nowhere"), str(tmp_path / "dst"), "--detector", "dlib"]) == 2
    assert "source folder not found" in capsys.readouterr().err
    (tmp_path / "src").mkdir()
    with pytest.raises(ValueError, match="inside the source"):
        align_folder(tmp_path / "src", tmp_path / "src" / "out")
    with pytest.raises(ValueError, match="image_format"):
        align_folder(tmp_path / "src", tmp_path / "dst", image_format="gif")
    with pytest.raises(ValueError, match="policy"):
        align_folder(tmp_path / "src", tmp_path / "dst", policy="biggest")
    with pytest.raises(ValueError, match="workers"):
        align_folder(tmp_path / "src", tmp_path / "dst", workers=0)
    assert parse_size("96x112") == (96, 112)
    for bad in ("112", "0x112", "ax112", "1x2x3"):
        with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
            parse_size(bad)
    with pytest.raises(SystemExit):
        main(["align", "a", "b", "--size", "big"])


def test_list_images_is_sorted_recursive_and_filters_suffixes(tmp_path):
    for name in ("b/z.JPG", "a.png", "notes.md", "b/c/d.webp"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert [p.as_posix() for p in list_images(tmp_path)] == ["a.png", "b/c/d.webp", "b/z.JPG"]


def test_align_with_no_flags_works_offline_and_names_its_detector(shared_data, tmp_path, capsys, monkeypatch):
    """`hf-facerec align SRC DST` used to fail with "no YuNet model given": the default is dlib, offline."""
    monkeypatch.delenv("HF_FACEREC_YUNET", raising=False)
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(shared_data / "samples" / "obama.jpg", src / "obama.jpg")
    shutil.copy(shared_data / "samples" / "biden.jpg", src / "biden.jpg")
    assert main(["align", str(src), str(tmp_path / "dst"), "--workers", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "2 images, detector dlib: 2 aligned" in out, out
    summary = json.loads((tmp_path / "dst" / "align_report.json").read_text())
    assert summary["detector"] == "dlib" and summary["settings"]["detector"] == "dlib"
    assert Image.open(tmp_path / "dst" / "obama.jpg").size == (112, 112)
