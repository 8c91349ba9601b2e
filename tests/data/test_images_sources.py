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
