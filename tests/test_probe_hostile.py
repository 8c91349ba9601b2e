"""scripts/probe_hostile.py itself: its classification, and a handful of corpus cases run through its workers.

An expectation with a second item would mark a known limit outside the package (xfail, strict=False).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))

import probe_hostile  # noqa: E402
from hostile_corpus import Case  # noqa: E402
from probe_entries import CliRefusal, CliTraceback, Wrong  # noqa: E402


def _case(path="/x/corpus/images/truncated.jpg", kind="image"):
    return Case("img:truncated.jpg", kind, path, "refuse")


@pytest.mark.parametrize(
    "exc, category",
    [
        (ValueError("/x/corpus/images/truncated.jpg: not a readable image"), "refused"),
        (OSError("image file is truncated"), "traceback"),  # no file name: not a clear refusal
        (TypeError("truncated.jpg"), "traceback"),  # not a ValueError/OSError
        (RecursionError("maximum recursion depth"), "traceback"),
        (Wrong("mean 254 vs 128"), "silent-wrong"),
        (MemoryError(), "dos"),
        (CliRefusal("hf-facerec align: error: truncated.jpg is not an image"), "refused"),
        (CliRefusal("hf-facerec align: error: cannot convert float NaN to integer"), "traceback"),
        (CliTraceback("exit status 1"), "traceback"),
    ],
)
def test_classify(exc, category):
    assert probe_hostile.classify(exc, _case())[0] == category


def test_classify_in_memory_inputs_need_no_file_name():
    assert probe_hostile.classify(ValueError("NaN pixel"), _case("/x/arrays/nan.npy", "array"))[0] == "refused"
    assert probe_hostile.classify(ValueError("no face in images[0] (PngImageFile)"), _case(),
                                  "FaceEmbedder(PIL)")[0] == "refused"


RUNS = {
    # (case, entry point): categories accepted; a second item marks a known limit (xfail)
    ("img:ok.png", "load_rgb"): ({"ok"},),
    ("img:truncated.jpg", "load_rgb"): ({"refused"},),
    ("img:bomb_100k.png", "load_rgb"): ({"refused"},),
    ("bin:os_system.bin", "load_bin_pairs"): ({"refused"},),
    ("bin:ok.bin", "load_bin_pairs"): ({"ok"},),
    ("img:png16.png", "make_train_transform"): ({"ok"},),
    ("img:truncated.jpg", "make_train_transform"): ({"refused"},),
    ("img:bomb_sof.jpg", "make_train_transform"): ({"refused"},),
    ("bin:ndarray_uninit.bin", "load_bin_pairs"): ({"refused"},),
    ("rec:empty_idx", "RecordIOReader"): ({"ok", "refused"},),
}


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    out = tmp_path_factory.mktemp("probe")
    cases = "^(" + "|".join(sorted({c for c, _ in RUNS})).replace(".", r"\.") + ")$"
    entries = "^(" + "|".join(sorted({e for _, e in RUNS})) + ")$"
    status = probe_hostile.main(["--out", str(out), "--quick", "--jobs", "1", "--cases", cases, "--entries", entries])
    results = json.loads((out / "probe_results.json").read_text())
    return status, {(run["case"], run["entry"]): run for run in results["runs"]}, results["summary"]


@pytest.mark.slow
@pytest.mark.parametrize("key", list(RUNS), ids=[f"{c}-{e}" for c, e in RUNS])
def test_probe_run(probe, key, request):
    _, runs, _ = probe
    accepted, *bug = RUNS[key]
    if bug:
        request.applymarker(pytest.mark.xfail(reason=bug[0], strict=False))
    assert runs[key]["category"] in accepted, runs[key]


@pytest.mark.slow
def test_probe_summary_and_exit_status(probe):
    status, runs, summary = probe
    assert set(RUNS) <= set(runs)  # every run asked for (the regexes also pick their cross products), each classified
    assert all(run["category"] in probe_hostile.CATEGORIES for run in runs.values())
    assert summary["total"] == len(runs) and summary["counts"]["code-executed"] == 0
    bad = sum(summary["counts"][c] for c in probe_hostile.BAD)
    assert status == (1 if bad else 0)
