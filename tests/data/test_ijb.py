"""IJB-B/IJB-C metadata on a tiny fake release in InsightFace's layout."""

from __future__ import annotations

import numpy as np
import pytest

import datasets
from hf_facerec.data.ijb import IJB_IMAGE_FEATURES, load_ijb

IMAGES = ["1.jpg", "2.jpg", "3.jpg", "4.jpg", "5.jpg"]
TEMPLATES = [11, 11, 12, 13, 13]
MEDIAS = [101, 102, 103, 104, 104]


def _landmarks(row: int) -> list[float]:
    return [row * 10 + k + 0.5 for k in range(10)]


@pytest.fixture
def release(tmp_path):
    """``tmp_path/IJBC`` with meta/ and loose_crop/, plus 1:N CSVs."""
    base = tmp_path / "IJBC"
    (base / "meta").mkdir(parents=True)
    (base / "loose_crop").mkdir()
    for image in IMAGES:
        (base / "loose_crop" / image).write_bytes(b"jpeg")
    meta = base / "meta"
    (meta / "ijbc_face_tid_mid.txt").write_text(
        "".join(f"{i} {t} {m}\n" for i, t, m in zip(IMAGES, TEMPLATES, MEDIAS))
    )
    (meta / "ijbc_name_5pts_score.txt").write_text(
        "".join(f"{i} {' '.join(map(str, _landmarks(r)))} {0.9 + r / 100}\n" for r, i in enumerate(IMAGES))
    )
    (meta / "ijbc_template_pair_label.txt").write_text("11 12 1\n11 13 0\n12 13 0\n")
    (meta / "ijbc_1N_gallery_G1.csv").write_text(
        "TEMPLATE_ID,SUBJECT_ID,FILENAME\n11,7,img/1.jpg\n11,7,img/2.jpg\n12,8,img/3.jpg\n"
    )
    (meta / "ijbc_1N_probe_mixed.csv").write_text("TEMPLATE_ID,SUBJECT_ID,FILENAME,FRAME\n13,7,frames/4.png,1\n")
    return tmp_path


def test_load_ijb(release):
    for root in (release, release / "IJBC"):  # the release folder or its parent
        protocol = load_ijb(root, "IJB-C")
        assert protocol.name == "IJBC"
        assert protocol.image_paths == [str(release / "IJBC" / "loose_crop" / i) for i in IMAGES]
        assert protocol.template_ids.tolist() == TEMPLATES and protocol.media_ids.tolist() == MEDIAS
        assert protocol.landmarks.shape == (5, 5, 2) and protocol.landmarks.dtype == np.float32
        assert protocol.landmarks[2].ravel().tolist() == _landmarks(2)
        assert protocol.landmarks[2, 1].tolist() == [22.5, 23.5]  # (x, y) of the second point
        np.testing.assert_allclose(protocol.faceness_scores, [0.9, 0.91, 0.92, 0.93, 0.94], rtol=1e-6)
        assert protocol.pair_templates.tolist() == [[11, 12], [11, 13], [12, 13]]
        assert protocol.pair_labels.dtype == bool and protocol.pair_labels.tolist() == [True, False, False]
    assert sorted(protocol.identification) == ["gallery_G1", "probe_mixed"]
    gallery = protocol.identification["gallery_G1"]
    assert gallery.template_ids.tolist() == [11, 12] and gallery.subject_ids.tolist() == [7, 8]
    assert protocol.identification["probe_mixed"].subject_ids.tolist() == [7]


def test_to_dataset(release):
    dataset = load_ijb(release).to_dataset()
    assert dataset.features == IJB_IMAGE_FEATURES and len(dataset) == 5
    row = dataset.cast_column("image", datasets.Image(decode=False))[3]
    assert row["image"]["path"].endswith("loose_crop/4.jpg") and row["template_id"] == 13
    assert np.asarray(row["landmarks"]).ravel().tolist() == _landmarks(3)


def test_ijbb_and_missing_optional_sets(tmp_path, release):
    base = tmp_path / "IJBB"
    (release / "IJBC").rename(base)
    for path in (base / "meta").iterdir():
        path.rename(path.with_name(path.name.replace("ijbc", "ijbb")))
    (base / "meta" / "ijbb_1N_gallery_G1.csv").unlink()
    (base / "meta" / "ijbb_1N_probe_mixed.csv").unlink()
    protocol = load_ijb(tmp_path, name="ijbb")
    assert protocol.name == "IJBB" and protocol.identification == {} and len(protocol.image_paths) == 5


def _rewrite(release, name, text):
    (release / "IJBC" / "meta" / name).write_text(text)


@pytest.mark.parametrize(
    "name, text, error, message",
    [
        ("ijbc_face_tid_mid.txt", "1.jpg 11 101\n", ValueError, "lists 1 images"),
        ("ijbc_face_tid_mid.txt", "".join(f"{i} 1 1\n" for i in IMAGES[::-1]), ValueError, "order differs at line 1"),
        ("ijbc_face_tid_mid.txt", "".join(f"{i} x 1\n" for i in IMAGES), ValueError, "malformed template/media"),
        ("ijbc_template_pair_label.txt", "11 12 1\n11 13\n", ValueError, ":2: expected 3 columns"),
        ("ijbc_template_pair_label.txt", "11 12 1 5\n", ValueError, "expected 3 columns .* found 4"),
        ("ijbc_template_pair_label.txt", "11 12 1\n11 12 1 5\n", ValueError, "malformed template pair"),
        ("ijbc_template_pair_label.txt", "11 12 2\n", ValueError, "0 or 1"),
        ("ijbc_template_pair_label.txt", "", ValueError, "empty"),
        ("ijbc_1N_gallery_G1.csv", "TEMPLATE_ID,SUBJECT_ID\n11,7\n11,8\n", ValueError, "template 11 .* more than one"),
        ("ijbc_1N_gallery_G1.csv", "TEMPLATE,SUBJECT_ID\n11,7\n", ValueError, "needs TEMPLATE_ID"),
    ],
)
def test_malformed_metadata(release, name, text, error, message):
    _rewrite(release, name, text)
    with pytest.raises(error, match=message):
        load_ijb(release)


def test_missing_files(release, tmp_path):
    with pytest.raises(ValueError, match="IJBB' or 'IJBC"):
        load_ijb(release, name="IJBA")
    with pytest.raises(FileNotFoundError, match="no IJB 'meta' folder"):
        load_ijb(tmp_path / "elsewhere")
    (release / "IJBC" / "loose_crop" / "3.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 IJB image\(s\) missing .*3.jpg"):
        load_ijb(release)
    assert len(load_ijb(release, check_files=False).image_paths) == 5
    (release / "IJBC" / "meta" / "ijbc_template_pair_label.txt").unlink()
    with pytest.raises(FileNotFoundError, match="template pair file"):
        load_ijb(release)


_LANDMARK_ROWS = "".join(f"{i} {' '.join(map(str, _landmarks(r)))} 0.9\n" for r, i in enumerate(IMAGES))


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("ijbc_template_pair_label.txt", b"11 12 1\n99999999999999999999999 12 1\n", "ijbc_template_pair_label.txt: malformed"),
        ("ijbc_name_5pts_score.txt", _LANDMARK_ROWS.replace("0.9\n", "inf\n", 1).encode(),
         "ijbc_name_5pts_score.txt:1: a landmark value is not finite"),
        ("ijbc_name_5pts_score.txt", _LANDMARK_ROWS.replace("0.5", "nan", 1).encode(),
         "ijbc_name_5pts_score.txt:1: expected 12 columns of numbers .* missing or NaN"),
        ("ijbc_1N_gallery_G1.csv", b"", "ijbc_1N_gallery_G1.csv: not a readable 1:N template CSV"),
        ("ijbc_1N_gallery_G1.csv", "TEMPLATE_ID,SUBJECT_ID,FILENAME\n11,7,Jos\u00e9.jpg\n".encode("latin-1"),
         "ijbc_1N_gallery_G1.csv: not a readable 1:N template CSV: 'utf-8' codec"),
        ("ijbc_1N_gallery_G1.csv", b"TEMPLATE_ID,SUBJECT_ID\n99999999999999999999999,7\n",
         r"ijbc_1N_gallery_G1.csv: TEMPLATE_ID and SUBJECT_ID must be integers \(int64\)"),
    ],
)
def test_hostile_metadata_names_the_file(release, name, data, message):
    # Issue 13: out-of-range integers, inf/NaN landmarks, empty or Latin-1 CSVs: one ValueError naming the file.
    (release / "IJBC" / "meta" / name).write_bytes(data)
    with pytest.raises(ValueError, match=message):
        load_ijb(release)


def test_bom_in_template_csv_is_accepted(release):
    (release / "IJBC" / "meta" / "ijbc_1N_gallery_G1.csv").write_bytes(b"\xef\xbb\xbfTEMPLATE_ID,SUBJECT_ID\n11,7\n12,8\n")
    assert load_ijb(release).identification["gallery_G1"].template_ids.tolist() == [11, 12]
