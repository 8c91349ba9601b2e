"""The Space end to end: the app launched on 127.0.0.1 with the offline default model, driven by gradio_client.

The default model here is the untrained fallback with its synthetic calibration (no outputs/quickstart/model in the
working directory, no FACEREC_MODEL); faces come from :class:`tests.space.KnownFacesDetector` (see tests/space/__init__).
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from hf_facerec.demo import build_untrained_model, load_demo
from tests.space import (
    KnownFacesDetector,
    deep_json,
    encrypted_zip,
    load_space_module,
    lying_size_zip,
    register_examples,
    synthetic_photo,
)


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    files = tmp_path_factory.mktemp("files")
    with pytest.MonkeyPatch.context() as patch:
        uploads = tmp_path_factory.mktemp("gradio_uploads")
        patch.setenv("GRADIO_TEMP_DIR", str(uploads))
        patch.delenv("FACEREC_MODEL", raising=False)
        patch.chdir(tmp_path_factory.mktemp("cwd"))  # no outputs/quickstart/model: the offline fallback
        detector = KnownFacesDetector()
        register_examples(detector)  # finds the bundled examples' faces, as YuNet does
        demo = load_demo(detector=detector)  # untrained model + calibration on 200 synthetic pairs
        app_module = load_space_module("app")
        app = app_module.build_app(demo)
        app.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, **app_module.LAUNCH_KWARGS)
        try:
            yield SimpleNamespace(app=app, demo=demo, detector=detector, files=files, uploads=uploads,
                                  client=Client(app.local_url, verbose=False), module=app_module)
        finally:
            app.close()


def _verify(space, first, second, choice=None, threshold=0.5, client=None):
    choice = choice or space.demo.operating_points[0].label
    args = [handle_file(str(p)) if p is not None else None for p in (first, second)]
    return (client or space.client).predict(*args, choice, threshold, 0, 0, api_name="/verify")


def test_default_model_has_calibrated_points_and_all_tabs(space):
    assert space.demo.model_source.startswith("untrained")
    assert [p.name for p in space.demo.operating_points][:2] == ["FAR 0.01", "FAR 0.1"]
    markdown = " ".join(str(c.get("props", {}).get("value")) for c in space.app.config["components"] if c.get("type") == "markdown")
    assert "## Benchmarks" in markdown and "| synthetic |" in markdown and "Untrained demo model" in markdown
    assert "| A |" in markdown and "GARBE" in markdown  # the bias dashboard starts with the calibration's report
    labels = {c.get("props", {}).get("label") for c in space.app.config["components"]}
    assert {"First photo", "Probe photo", "Report"} <= {str(label).split(". ")[-1] for label in labels}


def test_verify_same_photo_returns_faces_crops_and_a_decision(space):
    synthetic_photo(space.detector, [(1, 0, 112)], space.files / "same.png")
    shown1, shown2, crop1, crop2, text = _verify(space, space.files / "same.png", space.files / "same.png")
    assert text.startswith("**Same person**: similarity 1.000") and "false accept rate of 0.01" in text
    assert all(path and path.endswith((".png", ".webp", ".jpeg", ".jpg")) for path in (shown1, shown2, crop1, crop2))
    custom = _verify(space, space.files / "same.png", space.files / "same.png", space.module.CUSTOM, 1.0)[-1]
    assert "threshold 1.000 (custom" in custom  # a score of 1.000 may round down below a threshold of exactly 1
    assert not list(space.uploads.rglob("same.png")), "uploaded files must be deleted after the request"


def test_friendly_messages_instead_of_errors(space):
    (space.files / "notes.jpg").write_text("not an image")
    synthetic_photo(space.detector, [(1, 0, 112)], space.files / "face.png")
    from PIL import Image

    Image.new("RGB", (80, 80), (40, 40, 40)).save(space.files / "blank.png")
    cases = [((space.files / "notes.jpg", space.files / "face.png"), "The first photo is not an image"),
             ((space.files / "face.png", space.files / "blank.png"), "No face found in the second photo"),
             ((space.files / "face.png", None), "Please add the second photo")]
    for (first, second), message in cases:
        result = _verify(space, first, second)
        assert result[:4] == (None, None, None, None) and result[4].startswith("⚠️") and message in result[4], result
    assert not list(space.uploads.rglob("notes.jpg")) and not list(space.uploads.rglob("blank.png"))


def test_upload_size_limit_is_enforced_by_client_and_server(space):
    import httpx

    big = space.files / "big.jpg"
    big.write_bytes(b"\xff" * (21 * 2**20))  # over the 20 MB limit
    with pytest.raises(ValueError, match="exceeds the maximum file size"):  # gradio_client reads the limit
        _verify(space, big, big)
    response = httpx.post(space.app.local_url + "gradio_api/upload", files={"files": ("big.jpg", big.read_bytes())})
    assert response.status_code == 413  # and the server refuses it from any client


def _call(space, api_name: str, data: list) -> str:
    """POST a raw JSON call (what any HTTP client can send, data: URLs included); the SSE answer's text."""
    import httpx

    response = httpx.post(f"{space.app.local_url}gradio_api/call/{api_name}", json={"data": data}, timeout=60)
    response.raise_for_status()
    url = f"{space.app.local_url}gradio_api/call/{api_name}/{response.json()['event_id']}"
    with httpx.stream("GET", url, timeout=120) as stream:
        return "".join(stream.iter_text())


def test_request_body_limit_on_every_route(space):
    """An 80 MB JSON body with a 60 MB data: URL photo used to be read whole; now every route stops at 20 MB."""
    import httpx

    limit = space.module.MAX_REQUEST_BYTES
    assert limit == 20 * 2**20 and space.module.MAX_UPLOAD_REQUEST_BYTES == 200 * 2**20
    photo = "data:image/png;base64," + "A" * (limit + 1)
    body = json.dumps({"data": [photo, photo, space.module.CUSTOM, 0.3, 0, 0]}).encode()
    json_type = {"content-type": "application/json"}
    for route in ("gradio_api/call/verify", "gradio_api/queue/join", "gradio_api/run/predict", "no/such/route"):
        response = httpx.post(space.app.local_url + route, content=body, headers=json_type, timeout=60)
        assert response.status_code == 413, (route, response.status_code)  # refused on Content-Length, unread

    def chunked():  # no Content-Length: the bytes are counted as they stream in
        for start in range(0, len(body), 2**20):
            yield body[start:start + 2**20]

    response = httpx.post(space.app.local_url + "gradio_api/call/verify", content=chunked(), headers=json_type, timeout=60)
    assert response.status_code == 413 and response.json() == {"detail": "Content Too Large"}
    # one upload request carries every file of a multi-file gallery: over the JSON limit, within its own
    files = [("files", (f"person{i}_1.png", bytes(11 * 2**20))) for i in range(2)]
    assert httpx.post(space.app.local_url + "gradio_api/upload", files=files, timeout=60).status_code == 200


def test_data_url_photos_get_the_space_limits(space):
    from PIL import Image

    synthetic_photo(space.detector, [(3, 0, 112)], space.files / "inline.png")
    inline = {"path": None, "url": "data:image/png;base64," + base64.b64encode((space.files / "inline.png").read_bytes()).decode(),
              "orig_name": "inline.png", "meta": {"_type": "gradio.FileData"}}
    assert "**Same person**: similarity 1.000" in _call(space, "verify", [inline, inline, space.module.CUSTOM, 0.3, 0, 0])
    big = io.BytesIO()
    Image.new("RGB", (6000, 5000), (90, 90, 90)).save(big, "PNG")  # 30 MP in a few KB
    huge = {**inline, "url": "data:image/png;base64," + base64.b64encode(big.getvalue()).decode()}
    text = _call(space, "verify", [huge, inline, space.module.CUSTOM, 0.3, 0, 0])
    assert "The first photo is too large: at most 25 megapixels, please." in text, text


def test_lying_and_encrypted_zips_and_deep_json_are_friendly_messages(space):
    (space.files / "lying.zip").write_bytes(lying_size_zip("alice/1.png"))
    (space.files / "locked.zip").write_bytes(encrypted_zip("bob/1.png"))
    (space.files / "deep.json").write_bytes(deep_json())
    lying = space.client.predict([handle_file(str(space.files / "lying.zip"))], api_name="/build_gallery")
    assert lying.startswith("⚠️ The zip member alice/1.png is damaged"), lying
    locked = space.client.predict([handle_file(str(space.files / "locked.zip"))], api_name="/build_gallery")
    assert locked.startswith("⚠️ The zip member bob/1.png is password-protected"), locked
    deep = space.client.predict(handle_file(str(space.files / "deep.json")), api_name="/load_results")[-1]
    assert deep.startswith("⚠️ The results file is nested more than 32 levels deep"), deep


def test_gallery_from_images_and_zip_then_identify(space):
    paths = []
    for identity in (20, 21):
        synthetic_photo(space.detector, [(identity, 0, 112)], space.files / f"person{identity}_1.png")
        paths.append(space.files / f"person{identity}_1.png")
    synthetic_photo(space.detector, [(22, 0, 112)], space.files / "zed.png")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(space.files / "zed.png", "zed/1.png")
        zf.writestr("../escape.png", b"x")
    (space.files / "gallery.zip").write_bytes(archive.getvalue())
    client = Client(space.app.local_url, verbose=False)  # a session of its own: the gallery lives in its state
    empty = client.predict(handle_file(str(paths[0])), 0, api_name="/identify")[-1]
    assert empty.startswith("⚠️") and "gallery is empty" in empty
    info = client.predict([handle_file(str(p)) for p in paths + [space.files / "gallery.zip"]], api_name="/build_gallery")
    assert info.startswith("Gallery: 3 identities from 3 face images") and "escape.png: path leaves the archive" in info
    ranking = client.predict(handle_file(str(space.files / "zed.png")), 0, api_name="/identify")[-1]
    rows = [line.split("|")[1:4] for line in ranking.splitlines()[2:5]]
    assert [r[0].strip() for r in rows] == ["1", "2", "3"] and rows[0][1].strip() == "zed" and rows[0][2].strip() == "1.000"
    assert {r[1].strip() for r in rows} == {"zed", "person20", "person21"}
    # another session does not see this gallery
    assert "gallery is empty" in space.client.predict(handle_file(str(paths[0])), 0, api_name="/identify")[-1]


def test_bias_dashboard_loads_a_results_json_and_refuses_other_files(space):
    results = {"results": space.demo.results["results"]}
    (space.files / "results.json").write_text(json.dumps(results))
    out = space.client.predict(handle_file(str(space.files / "results.json")), api_name="/load_results")
    assert "| A |" in out[-1] and "GARBE" in out[-1]
    assert sum(isinstance(item, str) and item.endswith((".png", ".webp")) for item in out) == 3
    (space.files / "bad.json").write_text("{not json")
    bad = space.client.predict(handle_file(str(space.files / "bad.json")), api_name="/load_results")[-1]
    assert bad.startswith("⚠️") and "not a JSON results file" in bad


def test_run_bias_with_too_few_pairs_says_so(space):
    text = space.client.predict(60, 0.1, api_name="/run_bias")[-1]
    assert text.startswith("⚠️ Too few pairs for a bias report")


def _components(app, kind):
    return [c.get("props", {}) for c in app.config["components"] if c.get("type") == kind]


def test_bundled_examples_fill_the_verify_tab_and_pick_face_two(space):
    (examples,) = _components(space.app, "dataset")
    assert len(examples["samples"]) == 3 and examples["sample_labels"][2].startswith("Two-face photo")
    assert space.app.show_error is True  # launched as the Space launches: unexpected errors show their message
    rows, _ = space.module.write_examples(space.detector)
    two_faces, photo, face1, face2 = rows[2]
    text = space.client.predict(handle_file(two_faces), handle_file(photo), space.demo.operating_points[0].label, 0.3,
                                face1, face2, api_name="/verify")[-1]
    assert "2 faces found in the first photo; using face 2 (green, your pick)" in text
    assert Path(examples["samples"][2][0]["path"]).is_file(), "an example file must survive a request that used it"


def test_bad_face_number_is_a_clear_gradio_error(space):
    synthetic_photo(space.detector, [(4, 0, 80), (5, 0, 128)], space.files / "two.png")
    with pytest.raises(AppError, match="Face number 3 for the first photo, which has 2 face"):
        space.client.predict(handle_file(str(space.files / "two.png")), handle_file(str(space.files / "two.png")),
                             space.module.CUSTOM, 0.3, 3, 0, api_name="/verify")
    with pytest.raises(AppError, match="face number for the second photo must be a whole number"):
        space.client.predict(handle_file(str(space.files / "two.png")), handle_file(str(space.files / "two.png")),
                             space.module.CUSTOM, 0.3, 0, -2, api_name="/verify")


def test_model_without_thresholds_says_uncalibrated_end_to_end(space, tmp_path):
    """What the user saw: a real model without stored thresholds labelled "FAR 0.01" and "synthetic 86.50%"."""
    model_dir = tmp_path / "casia"
    build_untrained_model(seed=1).save_pretrained(model_dir)
    demo = load_demo(model_dir, detector=space.detector)
    app = space.module.build_app(demo)
    app.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, **space.module.LAUNCH_KWARGS)
    try:
        (dropdown,) = [c for c in _components(app, "dropdown") if "Operating point" in str(c.get("label"))]
        assert [choice[0] for choice in dropdown["choices"]] == [space.module.CUSTOM]
        markdown = " ".join(str(c.get("value")) for c in _components(app, "markdown"))
        assert "Uncalibrated model" in markdown and "| synthetic |" not in markdown and "FAR 0.01" not in markdown
        synthetic_photo(space.detector, [(1, 0, 112)], space.files / "one.png")
        text = Client(app.local_url, verbose=False).predict(
            handle_file(str(space.files / "one.png")), handle_file(str(space.files / "one.png")), space.module.CUSTOM,
            0.3, 0, 0, api_name="/verify")[-1]
        assert "threshold 0.300 (custom, UNCALIBRATED" in text and "FAR 0.01" not in text, text
    finally:
        app.close()
