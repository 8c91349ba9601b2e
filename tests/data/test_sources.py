"""load_train_dataset: every ordinary dataset form gives the same image + label rows; anything else one clear error."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import datasets
from hf_facerec.data import sources
from hf_facerec.data.convert import folder_to_parquet
from hf_facerec.data.sources import load_train_dataset

NAMES = ["alice", "bob", "carol"]


def make_faces(root, per_identity: int = 2, size: int = 40):
    """``root/<name>/<i>.png`` noise images, 3 identities; returns root."""
    rng = np.random.default_rng(0)
    for name in NAMES:
        (root / name).mkdir(parents=True)
        for index in range(per_identity):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / name / f"{index}.png")
    return root


def make_sources(tmp_path) -> dict:
    """The same 6 faces in every accepted local form: form name -> the string a user passes."""
    faces = make_faces(tmp_path / "faces")
    folder_to_parquet(faces, tmp_path / "converted", progress=False)
    shard = next((tmp_path / "converted").glob("*.parquet"))
    saved = load_train_dataset(faces)
    saved.save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({"train": saved, "test": saved.select([0])}).save_to_disk(str(tmp_path / "saved_dict"))
    return {"convert": str(tmp_path / "converted"), "parquet file": str(shard),
            "parquet glob": str(tmp_path / "converted" / "*.parquet"), "imagefolder": str(faces),
            "save_to_disk": str(tmp_path / "saved"), "save_to_disk dict": str(tmp_path / "saved_dict")}


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    return make_sources(tmp_path_factory.mktemp("sources"))


@pytest.mark.parametrize("form", ["convert", "parquet file", "parquet glob", "imagefolder", "save_to_disk",
                                  "save_to_disk dict"])
def test_every_form_gives_the_same_rows(places, form):
    dataset = load_train_dataset(places[form])
    assert isinstance(dataset, datasets.Dataset) and dataset.column_names == ["image", "label"]
    assert dataset.features["label"] == datasets.ClassLabel(names=NAMES)  # the identity names survive
    assert dataset["label"][:] == [0, 0, 1, 1, 2, 2]
    image = dataset[2]["image"]
    assert image.size == (40, 40)
    expected = np.asarray(Image.open(f"{places['imagefolder']}/bob/0.png"))
    assert np.array_equal(np.asarray(image.convert("RGB")), expected)  # the same pixels, not just the same count


@pytest.mark.parametrize("form", ["convert", "imagefolder", "save_to_disk dict"])
def test_streaming(places, form):
    dataset = load_train_dataset(places[form], streaming=True)
    assert isinstance(dataset, datasets.IterableDataset)
    assert [row["label"] for row in dataset] == [0, 0, 1, 1, 2, 2]


def test_hub_snapshot_folder_with_parquet_under_data(tmp_path, places):
    """A downloaded dataset repo keeps its shards in data/ next to a README: found, split from the file names."""
    import shutil

    (tmp_path / "snapshot" / "data").mkdir(parents=True)
    (tmp_path / "snapshot" / "README.md").write_text("# faces\n")
    shutil.copy(places["parquet file"], tmp_path / "snapshot" / "data" / "train-00000-of-00001.parquet")
    shutil.copy(places["parquet file"], tmp_path / "snapshot" / "data" / "test-00000-of-00001.parquet")
    dataset = load_train_dataset(tmp_path / "snapshot", split="test")
    assert len(dataset) == 6 and dataset.features["label"].names == NAMES


def test_split_of_a_dataset_dict(places):
    assert len(load_train_dataset(places["save_to_disk dict"], split="test")) == 1
    with pytest.raises(ValueError, match=r"no split 'validation' \(splits: \['test', 'train'\]\)"):
        load_train_dataset(places["save_to_disk dict"], split="validation")


def test_identity_selection_is_for_image_folders(places):
    assert len(load_train_dataset(places["imagefolder"], max_identities=2)) == 4
    with pytest.raises(ValueError, match="hf-facerec convert --min-images --max-identities"):
        load_train_dataset(places["convert"], max_identities=2)


def test_other_column_names_and_string_labels(tmp_path, places):
    """A Parquet file of another tool: `img` Image column, `person` string names, an extra column dropped."""
    rows = load_train_dataset(places["imagefolder"])
    other = datasets.Dataset.from_dict(
        {"img": rows.cast_column("image", datasets.Image(decode=False))["image"][:],
         "person": ["bob", "bob", "alice", "alice", "carol", "carol"], "note": ["x"] * 6},
        features=datasets.Features({"img": datasets.Image(), "person": datasets.Value("string"),
                                    "note": datasets.Value("string")}))
    other.to_parquet(str(tmp_path / "other.parquet"))
    # `person` is not a ClassLabel, so nothing tells which column is the label: one error listing the columns
    with pytest.raises(ValueError, match=r"no 'label' column \(columns: \['img', 'note', 'person'\]\)"):
        load_train_dataset(tmp_path / "other.parquet")
    other.rename_column("person", "label").to_parquet(str(tmp_path / "named.parquet"))
    dataset = load_train_dataset(tmp_path / "named.parquet")
    assert dataset.column_names == ["image", "label"]
    assert dataset.features["label"].names == NAMES and dataset["label"][:] == [1, 1, 0, 0, 2, 2]


def test_hub_id_goes_to_load_dataset(monkeypatch):
    """A non-path id is loaded with datasets.load_dataset (no network here: the call is recorded)."""
    calls = []
    hub = datasets.Dataset.from_dict({"photo": [np.zeros((8, 8, 3), np.uint8)] * 2, "identity": [1, 0]},
                                     features=datasets.Features({"photo": datasets.Image(),
                                                                 "identity": datasets.ClassLabel(names=["a", "b"])}))

    def fake_load_dataset(path, *args, **kwargs):
        calls.append((path, kwargs))
        return hub

    monkeypatch.setattr(sources.datasets, "load_dataset", fake_load_dataset)
    dataset = load_train_dataset("someone/faces", split="train")
    assert calls == [("someone/faces", {"split": "train", "streaming": False})]
    assert dataset.column_names == ["image", "label"] and dataset["label"][:] == [1, 0]  # lone Image/ClassLabel renamed


def test_hub_id_offline_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match=r"'someone/faces': no such local file or folder, and loading it as a Hub "
                                         r"dataset id failed .*accepted: an `hf-facerec convert` output folder"):
        load_train_dataset("someone/faces")


def _bad(tmp_path, kind: str) -> str:
    if kind == "missing path":
        return str(tmp_path / "missing")
    if kind == "empty folder":
        (tmp_path / "empty").mkdir()
        return str(tmp_path / "empty")
    if kind == "txt file":
        (tmp_path / "pairs.txt").write_text("alice 1 2\n")
        return str(tmp_path / "pairs.txt")
    if kind == "folder of non-images":
        (tmp_path / "notes" / "alice").mkdir(parents=True)
        (tmp_path / "notes" / "alice" / "a.txt").write_text("not an image")
        (tmp_path / "notes" / "b.jpg.txt").write_text("not an image")
        return str(tmp_path / "notes")
    if kind == "glob of other files":
        (tmp_path / "a.csv").write_text("x\n")
        return str(tmp_path / "*.csv")
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing path", "empty folder", "txt file", "folder of non-images",
                                  "glob of other files"])
def test_anything_else_is_one_value_error_naming_the_path(tmp_path, kind):
    source = _bad(tmp_path, kind)
    with pytest.raises(ValueError) as error:
        load_train_dataset(source)
    message = str(error.value)
    assert repr(source) in message and sources.ACCEPTED_FORMS in message and "\n" not in message
