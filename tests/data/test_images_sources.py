"""load_rgb on the string sources transformers' load_image takes: http(s) URLs and base64 (bare or data URI)."""

from __future__ import annotations

import base64
import functools
import http.server
import io
import threading

import numpy as np
import pytest
from PIL import Image

from hf_facerec.data.images import InvalidImageError, load_rgb


@pytest.fixture
def png(tmp_path):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    (tmp_path / "face.png").write_bytes(buffer.getvalue())
    return image, buffer.getvalue(), tmp_path


def test_base64_and_data_uris_decode_to_the_same_pixels(png):
    image, data, _ = png
    encoded = base64.b64encode(data).decode()
    for source in (encoded, "data:image/png;base64," + encoded, encoded[:50] + "\n" + encoded[50:]):
        assert np.array_equal(np.asarray(load_rgb(source)), np.asarray(image))
    with pytest.raises(InvalidImageError, match="only base64 data URIs"):
        load_rgb("data:image/png," + encoded)
    with pytest.raises(InvalidImageError, match="not a readable image"):
        load_rgb(base64.b64encode(b"x" * 90).decode())  # valid base64, not an image
    with pytest.raises(FileNotFoundError, match="no such image file: missing.jpg"):
        load_rgb("missing.jpg")  # a mistyped path stays a missing file, not a base64 error


def test_urls_are_downloaded_and_failures_name_the_url(png):
    image, _, folder = png
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert np.array_equal(np.asarray(load_rgb(f"{url}/face.png")), np.asarray(image))
        with pytest.raises(InvalidImageError, match=f"{url}/nope.png: cannot download the image"):
            load_rgb(f"{url}/nope.png")
    finally:
        server.shutdown()


def test_huge_base64_is_refused_before_decoding(monkeypatch):
    from hf_facerec.data import images

    monkeypatch.setattr(images, "MAX_URL_BYTES", 3000)
    monkeypatch.setattr(images, "MAX_BASE64_CHARS", 4100)
    decoded = []
    real = images.base64.b64decode
    monkeypatch.setattr(images.base64, "b64decode", lambda *a, **k: decoded.append(1) or real(*a, **k))
    huge = "data:image/png;base64," + "A" * 5000  # a 5 KB string standing for an 80 MB request body
    with pytest.raises(InvalidImageError, match="string of 5,022 characters .* more than 3,000 bytes"):
        load_rgb(huge)
    with pytest.raises(InvalidImageError, match="refusing to decode"):
        load_rgb("A" * 5000)  # bare base64 too
    assert decoded == []  # refused on the length: the decoded copy was never allocated


def test_max_pixels_applies_to_base64_and_urls(png, tmp_path):
    big = io.BytesIO()
    Image.new("L", (3000, 2000)).save(big, format="PNG")  # 6 MP, a few KB encoded
    (png[2] / "big.png").write_bytes(big.getvalue())
    encoded = base64.b64encode(big.getvalue()).decode()
    for source in (encoded, "data:image/png;base64," + encoded):
        with pytest.raises(InvalidImageError, match="6,000,000 pixels exceeds max_pixels=5,000,000"):
            load_rgb(source, max_pixels=5_000_000)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(png[2]))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/big.png"
        with pytest.raises(InvalidImageError, match=f"{url}: image of 3000x2000"):
            load_rgb(url, max_pixels=5_000_000)
    finally:
        server.shutdown()
