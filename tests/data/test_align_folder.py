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

from ..conftest import fill_disk_on


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
    (src / "README.txt").write_text("not an image: counted and listed as not_an_image")


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
    assert (report.total, report.aligned, report.skipped_existing) == (7, 3, 0)
    assert report.counts() == {"invalid_image": 2, "no_face": 1, "duplicate_output": 0, "not_an_image": 1,
                               "skipped": 0}
    assert report.multiple_faces == 1  # two_people.jpg
    assert _failures(dst) == {
        "README.txt": "not_an_image",
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
    assert (again.aligned, again.skipped_existing, len(again.failures)) == (0, 3, 4)
    (dst / "two_people.jpg").unlink()
    assert align_folder(src, dst, **kwargs).aligned == 1
    assert align_folder(src, dst, overwrite=True, **kwargs).aligned == 3


def test_cli_with_two_workers_png_and_custom_size(photo_folder, tmp_path, capsys):
    src, onnx = photo_folder
    dst = tmp_path / "out"
    argv = ["align", str(src), str(dst), "--detector-model", str(onnx), "--workers", "2", "--chunksize", "1",
            "--template", "96x112", "--size", "48x56", "--format", "png", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "3 aligned" in capsys.readouterr().out
    crops = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*.png"))
    assert crops == ["biden/biden.png", "obama/obama2.png", "two_people.png"]
    assert all(Image.open(dst / c).size == (48, 56) for c in crops)
    assert len(_failures(dst)) == 4


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
        "README.txt": "not_an_image",
        "bad/blank.jpg": "no_face",
        "bad/blank.png": "duplicate_output",
        "bad/broken.jpg": "invalid_image",
        "bad/truncated.jpg": "invalid_image",
    }
    summary = json.loads((dst / "align_report.json").read_text())
    assert summary["total"] == 5 and summary["aligned"] == 0


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


def test_list_images_is_sorted_recursive_and_finds_images_by_content(tmp_path):
    for name in ("b/z.JPG", "a.png", "b/c/d.webp", "b/yale.happy"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / name, format={".happy": "GIF", ".JPG": "JPEG"}.get(Path(name).suffix))
    (tmp_path / "notes.md").write_text("# not an image")
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert [p.as_posix() for p in list_images(tmp_path)] == ["a.png", "b/c/d.webp", "b/yale.happy", "b/z.JPG"]


def test_align_with_no_flags_works_offline_and_names_its_detector(shared_data, tmp_path, capsys, monkeypatch):
    """`hf-facerec align SRC DST` used to fail with "no YuNet model given": the default is dlib, offline."""
    monkeypatch.delenv("HF_FACEREC_YUNET", raising=False)
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(shared_data / "samples" / "obama.jpg", src / "obama.jpg")
    shutil.copy(shared_data / "samples" / "biden.jpg", src / "biden.jpg")
    assert main(["align", str(src), str(tmp_path / "dst"), "--workers", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "2 files, detector dlib: 2 aligned" in out, out
    summary = json.loads((tmp_path / "dst" / "align_report.json").read_text())
    assert summary["detector"] == "dlib" and summary["settings"]["detector"] == "dlib"
    assert Image.open(tmp_path / "dst" / "obama.jpg").size == (112, 112)


# ---- issue 13: images by content, the symlink policy, output faults ----------------------------------------


def test_extension_less_images_are_aligned_not_dropped(shared_data, tmp_path, capsys):
    """The Yale faces are GIFs named subject01.happy: once `0 images: 0 aligned`, now found and aligned."""
    src = tmp_path / "yale"
    src.mkdir()
    with Image.open(shared_data / "samples" / "obama.jpg") as photo:
        for mood in ("happy", "sad"):
            photo.convert("L").save(src / f"subject01.{mood}", format="GIF")
    dst = tmp_path / "dst"
    assert main(["align", str(src), str(dst), "--detector", "dlib", "--workers", "1", "--no-progress"]) == 0
    assert "2 files, detector dlib: 2 aligned" in capsys.readouterr().out
    # Each keeps its own name (no "subject01.jpg" collision): the output suffix is appended.
    assert sorted(p.name for p in dst.glob("*.jpg")) == ["subject01.happy.jpg", "subject01.sad.jpg"]


def test_non_images_and_links_leaving_src_are_counted_and_listed(tmp_path):
    src, outside = tmp_path / "src", tmp_path / "outside"
    (src / "person").mkdir(parents=True)
    outside.mkdir()
    Image.new("RGB", (60, 60), (20, 20, 20)).save(outside / "private.jpg")
    Image.new("RGB", (60, 60), (90, 90, 90)).save(src / "person" / "noext", format="PNG")
    (src / "person" / "leak.jpg").symlink_to(outside / "private.jpg")
    (src / "person" / "passwd.jpg").symlink_to("/etc/passwd")
    (src / "person" / "notes.jpg").write_text("a text file named .jpg")
    report = align_folder(src, tmp_path / "dst", detector="dlib", workers=1, progress=False)
    assert report.total == 4 and report.counts()["not_an_image"] == 1 and report.counts()["skipped"] == 2
    rows = {row["path"]: row for row in csv.DictReader(open(tmp_path / "dst" / "failures.csv", encoding="utf-8"))}
    assert rows["person/noext"]["kind"] == "no_face"  # found by content and tried, not silently dropped
    assert rows["person/notes.jpg"]["kind"] == "not_an_image"
    assert rows["person/leak.jpg"]["kind"] == "skipped"
    assert rows["person/leak.jpg"]["detail"].startswith(f"symbolic link to {outside / 'private.jpg'}, outside")
    assert "--follow-symlinks" in rows["person/passwd.jpg"]["detail"]
    followed = align_folder(src, tmp_path / "dst2", detector="dlib", workers=1, progress=False, follow_symlinks=True)
    kinds = {path: kind for path, kind, _ in followed.failures}
    assert kinds["person/leak.jpg"] == "no_face" and kinds["person/passwd.jpg"] == "not_an_image"


@pytest.fixture
def blank_src(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (60, 60), (128, 128, 128)).save(src / "blank.png")
    return src


def _one_error_line(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_output_that_is_a_file_or_not_creatable_is_one_line(blank_src, tmp_path, capsys):
    (tmp_path / "taken").write_text("a file")
    argv = ["--detector", "dlib", "--workers", "1", "--no-progress"]
    assert main(["align", str(blank_src), str(tmp_path / "taken"), *argv]) == 2
    _one_error_line(capsys, f"output folder {tmp_path / 'taken'} is a file, not a folder")
    assert main(["align", str(blank_src), str(tmp_path / "taken" / "sub"), *argv]) == 2
    _one_error_line(capsys, f"cannot create the output folder {tmp_path / 'taken' / 'sub'}")
    assert (tmp_path / "taken").read_text() == "a file"


def test_read_only_output_is_refused_up_front(blank_src, tmp_path, capsys, monkeypatch):
    import builtins

    import hf_facerec._files as files

    dst = tmp_path / "dst"
    dst.mkdir()

    def denied(path, *args, **kwargs):  # what a read-only mount answers (chmod does not stop root)
        if str(path).startswith(str(dst)):
            raise PermissionError(13, "Permission denied", str(path))
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(files, "open", denied, raising=False)
    assert main(["align", str(blank_src), str(dst), "--detector", "dlib", "--workers", "1", "--no-progress"]) == 2
    _one_error_line(capsys, f"hf-facerec align: error: output folder {dst} is not writable: Permission denied")
    assert list(dst.iterdir()) == []


@pytest.mark.parametrize("victim", ["failures.csv", "align_report.json", "face.jpg"])
def test_full_disk_leaves_no_partial_file_and_exits_2(blank_src, tmp_path, capsys, monkeypatch, victim):
    from hf_facerec.data import align as align_module

    dst = tmp_path / "dst"
    Image.new("RGB", (60, 60), (128, 128, 128)).save(blank_src / "face.png")

    def found_a_face(self, source, return_detection=False):  # blank images: make the aligner "find" one
        return type("Result", (), {"image": Image.new("RGB", (112, 112)), "num_faces": 1})()

    fill_disk_on(monkeypatch, victim)
    monkeypatch.setattr(align_module.FaceAligner, "__call__", found_a_face)
    assert main(["align", str(blank_src), str(dst), "--detector", "dlib", "--workers", "1", "--no-progress"]) == 2
    _one_error_line(capsys, f"hf-facerec align: error: cannot write {dst / victim}: No space left on device")
    assert not (dst / victim).exists()
    assert not [p for p in dst.rglob("*") if p.name.startswith(".")], "a partial file was left behind"


def test_a_folder_without_images_names_what_it_holds(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "notes.jpg").write_text("not a photo")
    assert main(["align", str(src), str(tmp_path / "dst"), "--detector", "dlib", "--no-progress"]) == 2
    _one_error_line(capsys, f"no images found under {src} (searched recursively); 1 other file(s), e.g. notes.jpg: "
                            "not an image")
    assert not (tmp_path / "dst").exists()  # nothing created for nothing
