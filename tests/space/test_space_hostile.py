"""The Space's upload helpers under hostile input (issue 13): oversized data: URLs, lying / encrypted zips, deep JSON.

The same inputs go through the launched app in test_space_client.py; here each refusal's exact message is checked.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from hf_facerec.demo import SpaceInputError
from hf_facerec.demo import dashboard as dash
from hf_facerec.demo import uploads
from tests.space import deep_json, encrypted_zip, lying_size_zip


def _data_url(content: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(content).decode()


def test_data_url_over_the_byte_limit_is_refused_before_decoding(monkeypatch):
    def no_decode(*args, **kwargs):
        raise AssertionError("decoded an oversized data URL")

    url = _data_url(bytes(3 * 2**10 + 1))  # 3 KiB + 1 byte
    monkeypatch.setattr(uploads.base64, "b64decode", no_decode)
    for payload in (url, {"path": None, "url": url, "orig_name": "big.png"}):
        with pytest.raises(SpaceInputError, match=r"^The probe is larger than 0 MB\.$"):
            uploads.read_upload(payload, "the probe", max_bytes=3 * 2**10)


def test_data_url_within_the_limit_decodes_exactly_and_garbage_is_refused():
    content = bytes(range(256)) * 12  # 3 KiB
    url = _data_url(content)
    assert uploads.read_upload(url, max_bytes=len(content)) == ("upload", content)  # the limit itself is allowed
    wrapped = url[:40] + "\n" + url[40:]  # MIME-style line breaks are base64 too
    assert uploads.read_upload({"path": None, "url": wrapped, "orig_name": "a.png"}) == ("a.png", content)
    assert uploads.MAX_UPLOAD_BYTES == 20 * 2**20  # the Space's one per-file limit, for files and data URLs alike
    for garbled in ("data:image/png;base64,@@@@", "data:image/png,plain", "data:image/png;base64"):
        with pytest.raises(SpaceInputError, match="The photo arrived garbled"):
            uploads.read_upload(garbled, "the photo")


def test_the_space_passes_its_pixel_limit_for_data_urls_and_bytes(tmp_path):
    """A 30 MP PNG (a few KB: one colour) sent as a data URL is refused at the Space's 25 MP, not decoded."""
    from hf_facerec import FaceEmbedder
    from hf_facerec.demo import FaceRecDemo, MAX_IMAGE_PIXELS, build_untrained_model
    from tests.space import KnownFacesDetector

    png = io.BytesIO()
    Image.new("RGB", (6000, 5000), (10, 20, 30)).save(png, "PNG")
    demo = FaceRecDemo(FaceEmbedder(build_untrained_model()), KnownFacesDetector(), [])
    assert demo.max_pixels == MAX_IMAGE_PIXELS == 25_000_000
    photo = uploads.read_upload(_data_url(png.getvalue()), "the first photo")[1]
    with pytest.raises(SpaceInputError, match="^The first photo is too large: at most 25 megapixels, please.$"):
        demo.find_faces(photo, "the first photo")


def test_zip_member_with_a_lying_size_is_refused_by_name():
    data = lying_size_zip("alice/1.png")
    with zipfile.ZipFile(io.BytesIO(data)) as archive, pytest.raises(zipfile.BadZipFile, match="Bad CRC-32"):
        archive.read("alice/1.png")  # what reached the client before
    with pytest.raises(SpaceInputError, match=r"^The zip member alice/1.png is damaged \(its data does not match"):
        uploads.read_gallery_zip(data)


def test_encrypted_zip_is_refused_by_name():
    data = encrypted_zip("bob/2.png")
    with zipfile.ZipFile(io.BytesIO(data)) as archive, pytest.raises(RuntimeError, match="password required"):
        archive.read("bob/2.png")
    with pytest.raises(SpaceInputError, match="^The zip member bob/2.png is password-protected; upload a zip without"):
        uploads.read_gallery_zip(data)
    # an encrypted non-image member is skipped like any non-image; the images are read
    png = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png, "PNG")
    mixed = io.BytesIO()
    with zipfile.ZipFile(mixed, "w") as archive:
        archive.writestr("carol/1.png", png.getvalue())
    assert uploads.read_gallery_zip(mixed.getvalue())[0] == [("carol", png.getvalue())]


def test_zip_with_corrupt_deflate_data_is_refused_by_name():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("dan/1.png", bytes(range(256)) * 8)
    data = bytearray(buffer.getvalue())
    start = data.find(b"PK\x03\x04") + 30 + len("dan/1.png")  # the member's compressed bytes
    data[start:start + 8] = b"\xff" * 8
    with pytest.raises(SpaceInputError, match="^The zip member dan/1.png is damaged"):
        uploads.read_gallery_zip(bytes(data))


def test_deeply_nested_results_json_is_a_clear_message():
    data = deep_json()
    assert len(data) == 200_000
    with pytest.raises(RecursionError):
        json.loads(data)  # what reached the client before
    message = r"^The results file is nested more than 32 levels deep; that is not a results file"
    with pytest.raises(SpaceInputError, match=message):
        dash.parse_results(data)
    shallow_enough_for_json = b'{"results": ' + deep_json(40) + b"}"
    with pytest.raises(SpaceInputError, match=message):  # parses, but is still refused: copies downstream recurse
        dash.parse_results(shallow_enough_for_json)
    assert dash._depth({"a": [1, {"b": []}]}, 32) == 4 and dash._depth(7, 32) == 0


def test_launch_keeps_the_request_limit_when_callers_add_app_kwargs(monkeypatch):
    from hf_facerec import FaceEmbedder
    from hf_facerec.demo import FaceRecDemo, build_untrained_model
    from hf_facerec.demo.request_limits import RequestSizeLimit
    from tests.space import KnownFacesDetector, load_space_module

    module = load_space_module("app")
    seen = {}
    monkeypatch.setattr(module.gr.Blocks, "launch", lambda self, **kwargs: seen.update(kwargs))
    extra = object()
    module.launch(FaceRecDemo(FaceEmbedder(build_untrained_model()), KnownFacesDetector(), []),
                  app_kwargs={"middleware": [extra], "docs_url": None}, show_error=False)
    limit, added = seen["app_kwargs"]["middleware"]
    assert limit.cls is RequestSizeLimit and added is extra and seen["app_kwargs"]["docs_url"] is None
    assert limit.kwargs == {"max_body_size": 20 * 2**20, "upload_body_size": 200 * 2**20}
    assert seen["max_file_size"] == 20 * 2**20 and seen["show_error"] is False
    assert module.LAUNCH_KWARGS["app_kwargs"]["middleware"] == [limit]  # the module default is not mutated
