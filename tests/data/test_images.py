"""load_rgb: every documented conversion on images made in a tmp dir, and clear errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from hf_facerec.data.images import InvalidImageError, load_rgb, to_rgb_array


def _save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


def test_rgb_roundtrip_from_path_bytes_file_and_pil(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    path = _save(Image.fromarray(array), tmp_path / "x.png")
    for source in (path, str(path), path.read_bytes(), Image.open(path), array):
        image = load_rgb(source)
        assert image.mode == "RGB" and image.size == (5, 7)
        np.testing.assert_array_equal(np.asarray(image), array)
    with open(path, "rb") as handle:
        np.testing.assert_array_equal(np.asarray(load_rgb(handle)), array)


@pytest.mark.parametrize("mode", ["L", "1"])
def test_grayscale_is_replicated(tmp_path, mode):
    gray = Image.fromarray(np.array([[0, 255], [255, 0]], dtype=np.uint8)).convert(mode)
    out = np.asarray(load_rgb(_save(gray, tmp_path / "g.png")))
    assert out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out[..., 0], [[0, 255], [255, 0]])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_rgba_composited_on_white(tmp_path):
    rgba = np.zeros((1, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (200, 0, 0, 255)  # opaque red stays red
    rgba[0, 1] = (0, 0, 0, 0)  # transparent black becomes white, not black
    rgba[0, 2] = (0, 0, 0, 128)  # half-transparent black: 255 * (1 - 128/255) = 127
    out = np.asarray(load_rgb(_save(Image.fromarray(rgba), tmp_path / "a.png")))
    np.testing.assert_array_equal(out[0, 0], (200, 0, 0))
    np.testing.assert_array_equal(out[0, 1], (255, 255, 255))
    np.testing.assert_allclose(out[0, 2], (127, 127, 127), atol=1)
    np.testing.assert_array_equal(np.asarray(load_rgb(rgba)), out)  # same from an array


def test_la_and_palette_with_transparency(tmp_path):
    la = Image.fromarray(np.array([[[10, 255], [10, 0]]], dtype=np.uint8), mode="LA")
    np.testing.assert_array_equal(np.asarray(load_rgb(la))[0], [[10, 10, 10], [255, 255, 255]])
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 255] + [0, 255, 0] + [0] * 762)
    palette.putdata([0, 1])
    palette.info["transparency"] = 1
    out = np.asarray(load_rgb(_save(palette, tmp_path / "p.png")))
    np.testing.assert_array_equal(out[0], [[0, 0, 255], [255, 255, 255]])


def test_cmyk_jpeg_converted(tmp_path):
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    out = np.asarray(load_rgb(_save(cmyk, tmp_path / "c.jpg", quality=100)))
    assert out.shape == (8, 8, 3)
    np.testing.assert_allclose(out[4, 4], (255, 0, 0), atol=3)


def test_sixteen_bit_scaled_to_eight(tmp_path):
    values = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    out = np.asarray(load_rgb(_save(image, tmp_path / "s.png")))
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 255, 128])
    np.testing.assert_array_equal(np.asarray(load_rgb(values))[0, :, 1], [0, 1, 255, 128])
    int32 = Image.fromarray(np.array([[-5, 70000]], dtype=np.int32), mode="I")  # clipped to 16 bits
    np.testing.assert_array_equal(np.asarray(load_rgb(int32))[0, :, 0], [0, 255])


def test_float_images_clipped(tmp_path):
    pil_float = Image.fromarray(np.array([[-5.0, 100.4, 300.0]], dtype=np.float32))
    assert pil_float.mode == "F"
    np.testing.assert_array_equal(np.asarray(load_rgb(pil_float))[0, :, 0], [0, 100, 255])
    # numpy floats follow the [0, 1] convention; half an 8-bit step of rounding slack is clipped
    np.testing.assert_array_equal(np.asarray(load_rgb(np.array([[-0.001, 0.5, 1.001]])))[0, :, 0], [0, 128, 255])
    nan_tiff = Image.fromarray(np.array([[1.0, np.nan]], dtype=np.float32))
    with pytest.raises(InvalidImageError, match="n.tif: float image with NaN"):
        load_rgb(_save(nan_tiff, tmp_path / "n.tif"))


@pytest.mark.parametrize(
    "array, message",
    [
        (np.array([[0.2, np.nan]], np.float32), "NaN or infinite"),
        (np.array([[0.2, np.inf]], np.float64), "NaN or infinite"),
        (np.array([[0.0, 255.0]], np.float32), r"must lie in \[0, 1\], got 0..255"),  # 0-255 floats: not clipped white
        (np.array([[-0.5, 0.5]], np.float32), r"got -0.5..0.5"),
        (np.array([[-1, 20]], np.int16), "int16 pixels must lie in 0-255, got -1..20"),
        (np.array([[0, 300]], np.int64), "int64 pixels must lie in 0-255, got 0..300"),
        (np.array([[1 + 1j]]), "unsupported image array dtype complex128"),
    ],
)
def test_bad_array_values_are_refused_not_clipped(array, message):
    with pytest.raises(InvalidImageError, match=message):
        load_rgb(array)
    with pytest.raises(InvalidImageError, match="images\\[2\\]"):
        load_rgb(array, name="images[2]")


def test_every_array_dtype_gives_the_uint8_pixels():
    face = np.random.default_rng(3).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    for array in (face.astype(np.float32) / 255, face.astype(np.float64) / 255, face.astype(np.uint16) * 257,
                  face.astype(np.int64), face.astype(np.int32)):
        np.testing.assert_array_equal(np.asarray(load_rgb(array)), face, err_msg=str(array.dtype))
        np.testing.assert_array_equal(to_rgb_array(array), face, err_msg=str(array.dtype))


def test_to_rgb_array_fast_paths_and_conversions(tmp_path):
    face = np.random.default_rng(4).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    assert to_rgb_array(face) is face  # the training hot path: no copy
    pil = Image.fromarray(face)
    out = to_rgb_array(pil)
    np.testing.assert_array_equal(out, face)
    assert not np.shares_memory(out, np.asarray(pil))
    rgba = np.zeros((1, 1, 4), np.uint8)  # transparent black
    np.testing.assert_array_equal(to_rgb_array(rgba), [[[255, 255, 255]]])
    np.testing.assert_array_equal(to_rgb_array(_save(Image.fromarray(face), tmp_path / "f.png")), face)


def test_exif_orientation_applied(tmp_path):
    array = np.zeros((2, 4, 3), dtype=np.uint8)  # 4 wide, 2 high; top-left pixel white
    array[0, 0] = 255
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rot.jpg"
    image.save(path, exif=exif, quality=100)
    out = load_rgb(path)
    assert out.size == (2, 4)  # transposed to portrait
    assert np.asarray(out)[0, 1].mean() > 200  # top-left moved to top-right after a CW turn


def test_not_an_image_and_corrupt_name_the_source(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a JPEG")
    with pytest.raises(InvalidImageError, match="notes.jpg"):
        load_rgb(text)
    with pytest.raises(InvalidImageError, match="bytes"):
        load_rgb(b"\x89PNG\r\n\x1a\n garbage")
    assert issubclass(InvalidImageError, ValueError)


def test_truncated_jpeg(tmp_path):
    buffer = io.BytesIO()
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format="JPEG", quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(InvalidImageError, match="cut.jpg"):
        load_rgb(path)


def test_decompression_bomb_refused_before_decoding(tmp_path):
    path = _save(Image.new("L", (3000, 2000)), tmp_path / "big.png")  # 6 MP, tiny on disk
    with pytest.raises(InvalidImageError, match="decompression bomb"):
        load_rgb(path, max_pixels=5_000_000)
    assert load_rgb(path, max_pixels=None).size == (3000, 2000)
    with pytest.raises(ValueError, match="max_pixels"):
        load_rgb(path, max_pixels=0)


def test_pil_hard_limit_becomes_invalid_image_error(tmp_path, monkeypatch):
    path = _save(Image.new("L", (100, 100)), tmp_path / "b.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL refuses > 2x this
    with pytest.raises(InvalidImageError, match="decompression bomb"):
        load_rgb(path, max_pixels=None)


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_rgb(tmp_path / "missing.png")
    with pytest.raises(TypeError):
        load_rgb(12345)
    with pytest.raises(InvalidImageError, match="shape"):
        load_rgb(np.zeros((4, 4, 2), dtype=np.uint8))
    with pytest.raises(InvalidImageError, match="dtype"):
        load_rgb(np.zeros((4, 4), dtype=object))
    with pytest.raises(InvalidImageError, match="empty"):
        load_rgb(np.zeros((0, 4, 3), dtype=np.uint8))


def test_a_lazily_opened_truncated_image_is_refused_naming_its_file(tmp_path):
    """Image.open (and datasets' Image feature) decode on first use: the truncation must surface as one
    InvalidImageError naming the file, from load_rgb and to_rgb_array alike, not a bare OSError."""
    from hf_facerec.data.images import to_rgb_array

    path = tmp_path / "cut.jpg"
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue()[:-200])
    for convert in (load_rgb, to_rgb_array):
        with Image.open(path) as lazy, pytest.raises(InvalidImageError, match="cut.jpg"):
            convert(lazy)


def test_an_empty_uint8_array_is_refused_not_passed_through():
    from hf_facerec.data.images import to_rgb_array

    with pytest.raises(InvalidImageError, match="empty"):
        to_rgb_array(np.zeros((0, 0, 3), np.uint8))
