"""The hostile-input corpus of issue 13, generated at run time into a folder (nothing binary is committed).

:func:`build_corpus` writes every file under ``root`` and returns the :class:`Case` list that
``scripts/probe_hostile.py`` feeds through the package's entry points. Each case says what a correct
entry point does with it (``expect``):

* ``ok``: a readable input; the right answer is known (``truth``: the RGB pixels the documented
  conversions give, an .npy next to the corpus, or ``oracle`` values such as a pair count);
* ``refuse``: only a clear refusal is right (any returned result is a silent wrong answer);
* ``either``: a clear refusal or the right answer are both fine.

Image truths are computed here with numpy and PIL primitives, never with ``hf_facerec``, so the probe
checks the package against an independent answer.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

#: Side of the face-size crops (the probe's tiny model takes 112x112 faces, so no detector runs on them).
SIDE = 112
#: The file a malicious payload creates when it manages to run code.
SENTINEL_NAME = "CODE_EXECUTED"


@dataclass
class Case:
    """One hostile input: ``kind`` picks the entry points that accept it, ``path`` the file or folder."""

    id: str
    kind: str
    path: str
    expect: str = "either"
    oracle: dict = field(default_factory=dict)
    note: str = ""

    def to_json(self) -> dict:
        """The case as a JSON-able dict."""
        return asdict(self)


def base_face(side: int = SIDE) -> np.ndarray:
    """A deterministic, asymmetric (side, side, 3) uint8 'face' with mean near 128 (rotations are visible)."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float64)
    rgb = np.stack([x / (side - 1) * 255, y / (side - 1) * 255, np.full_like(x, 128.0)], axis=2)
    rgb[side // 8 : side // 3, side // 8 : side // 2] = (250, 30, 30)  # a red block top-left
    return np.round(rgb).astype(np.uint8)


def _gray(rgb: np.ndarray) -> np.ndarray:
    return np.round(rgb.astype(np.float64) @ [0.299, 0.587, 0.114]).astype(np.uint8)


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _decoded(data: bytes) -> np.ndarray:
    """RGB pixels of encoded bytes by PIL's own decoder (the truth of lossy formats)."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A 60-byte PNG whose header claims ``width x height`` RGB pixels (a decompression bomb's signature)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 16)) + _png_chunk(b"IEND", b"")


def _jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with its SOF0 frame header patched to claim ``width x height``."""
    at = jpeg.index(b"\xff\xc0") + 5
    return jpeg[:at] + struct.pack(">HH", height, width) + jpeg[at + 4 :]


class _Writer:
    """Writes files under ``root`` and collects the cases."""

    def __init__(self, root: Path):
        self.root = root
        self.cases: list[Case] = []
        (root / "truth").mkdir(parents=True, exist_ok=True)

    def file(self, rel: str, data: bytes) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def image(self, name: str, data: bytes | None, truth: np.ndarray | None, expect: str, note: str = "",
              tol: float = 3.0, link_to: str | None = None) -> None:
        path = self.root / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if link_to is not None:
            path.symlink_to(link_to)
        else:
            path.write_bytes(data)
        oracle = {"tol": tol}
        if truth is not None:
            np.save(self.root / "truth" / f"{name}.npy", truth)
            oracle["truth"] = f"truth/{name}.npy"
        self.cases.append(Case(f"img:{name}", "image", str(path), expect, oracle, note))

    def add(self, case_id: str, kind: str, path: Path, expect: str, note: str = "", **oracle) -> None:
        self.cases.append(Case(case_id, kind, str(path), expect, oracle, note))


def _images(w: _Writer) -> None:
    face = base_face()
    pil = Image.fromarray(face)
    jpeg, png = _encode(pil, "JPEG", quality=95), _encode(pil, "PNG")
    gray = _gray(face)
    gray3 = np.repeat(gray[:, :, None], 3, axis=2)
    w.image("ok.jpg", jpeg, _decoded(jpeg), "ok", "control: a plain RGB JPEG")
    w.image("ok.png", png, face, "ok", "control: a plain RGB PNG", tol=0.5)
    w.image("truncated.jpg", jpeg[: len(jpeg) // 2], None, "refuse", "JPEG cut in half")
    w.image("truncated.png", png[: len(png) // 2], None, "refuse", "PNG cut in half")
    w.image("empty.jpg", b"", None, "refuse", "0 bytes")
    w.image("png_named.jpg", png, face, "ok", "wrong extension: PNG bytes named .jpg", tol=0.5)
    w.image("jpeg_named.png", jpeg, _decoded(jpeg), "ok", "wrong extension: JPEG bytes named .png")
    palette = Image.fromarray(face).quantize(16)
    gif = _encode(palette, "GIF")
    w.image("yale_noext", gif, _decoded(gif), "ok", "extension-less GIF (the Yale faces)", tol=0.5)
    w.image("png16.png", _encode(Image.fromarray(gray.astype(np.uint16) * 257), "PNG"), gray3, "ok",
            "16-bit greyscale PNG: 8-bit mean must stay ~128 (v / 257)", tol=0.6)
    alpha = np.tile(np.linspace(0, 255, SIDE).round().astype(np.uint8), (SIDE, 1))
    colour = face.copy()
    colour[alpha == 0] = 0  # transparent pixels hold black, as PNG cut-outs often do
    on_white = np.round(colour * (alpha[..., None] / 255.0) + 255.0 * (1 - alpha[..., None] / 255.0)).astype(np.uint8)
    w.image("rgba.png", _encode(Image.fromarray(np.dstack([colour, alpha])), "PNG"), on_white, "ok",
            "RGBA: composited on white", tol=1.5)
    gray_white = np.round(gray * (alpha / 255.0) + 255.0 * (1 - alpha / 255.0)).astype(np.uint8)
    w.image("la.png", _encode(Image.fromarray(np.dstack([gray, alpha]), "LA"), "PNG"),
            np.repeat(gray_white[:, :, None], 3, axis=2), "ok", "grey + alpha", tol=1.5)
    indices = (np.arange(SIDE)[None, :] // 28 + np.arange(SIDE)[:, None] // 28 * 4) % 4
    colours = np.array([[0, 0, 0], [200, 40, 40], [40, 200, 40], [40, 40, 200]], np.uint8)
    p_image = Image.fromarray(indices.astype(np.uint8), "P")
    p_image.putpalette(colours.flatten().tolist() + [0] * (256 - 4) * 3)
    p_truth = colours[indices].copy()
    p_truth[indices == 0] = 255  # index 0 is transparent: white
    w.image("palette_transparent.png", _encode(p_image, "PNG", transparency=0), p_truth, "ok",
            "palette PNG whose index 0 is transparent", tol=0.5)
    w.image("palette_transparent.gif", _encode(p_image, "GIF", transparency=0), p_truth, "ok",
            "palette GIF with a transparent index", tol=0.5)
    cmyk = _encode(pil.convert("CMYK"), "JPEG", quality=95)
    w.image("cmyk.jpg", cmyk, _decoded(cmyk), "ok", "CMYK JPEG (PIL's colour conversion)")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    rotated = _encode(pil.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95, exif=exif.tobytes())
    w.image("exif_rotated.jpg", rotated, np.asarray(Image.open(io.BytesIO(rotated)).transpose(
        Image.Transpose.ROTATE_270).convert("RGB")), "ok", "EXIF orientation 6: must be shown upright")
    gray_jpeg = _encode(Image.fromarray(gray), "JPEG", quality=95)
    w.image("gray.jpg", gray_jpeg, _decoded(gray_jpeg), "ok", "greyscale JPEG")
    w.image("one_by_one.png", _encode(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"),
            np.array([[[10, 20, 30]]], np.uint8), "either", "1x1 pixel", tol=0.5)
    w.image("tall_1x100000.png", _encode(Image.new("L", (1, 100_000), 77), "PNG"),
            np.full((100_000, 1, 3), 77, np.uint8), "either", "1 x 100000", tol=0.5)
    w.image("bomb_100k.png", bomb_png(), None, "refuse", "PNG header claiming 100k x 100k pixels")
    w.image("bomb_sof.jpg", _jpeg_with_size(jpeg, 65000, 65000), None, "refuse", "JPEG SOF claiming 65000 x 65000")
    frames = [Image.fromarray(face).quantize(16), Image.fromarray(255 - face).quantize(16)]
    animated = io.BytesIO()
    frames[0].save(animated, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    w.image("animated.gif", animated.getvalue(), _decoded(animated.getvalue()), "ok", "animated GIF: first frame",
            tol=0.5)
    w.image("tiff_i16.tif", _encode(Image.fromarray(gray.astype(np.uint16) * 257), "TIFF"), gray3, "ok",
            "TIFF mode I;16", tol=0.6)
    w.image("tiff_float.tif", _encode(Image.fromarray(gray.astype(np.float32), "F"), "TIFF"), gray3, "ok",
            "TIFF mode F (float values 0-255)", tol=0.6)
    bilevel = Image.fromarray(gray > 128).convert("1")
    w.image("tiff_1bit.tif", _encode(bilevel, "TIFF"), np.asarray(bilevel.convert("RGB")), "ok", "TIFF mode 1", tol=0.5)
    tiff_cmyk = _encode(pil.convert("CMYK"), "TIFF")
    w.image("tiff_cmyk.tif", tiff_cmyk, _decoded(tiff_cmyk), "ok", "TIFF mode CMYK", tol=0.5)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("payload.txt", "a zip hidden after the JPEG")
    w.image("polyglot_jpg_zip.jpg", jpeg + archive.getvalue(), _decoded(jpeg), "ok", "JPEG + zip polyglot")
    w.image("polyglot_gif_html.gif", gif + b"<script>alert(1)</script>", _decoded(gif), "either",
            "GIF followed by HTML", tol=0.5)
    w.image("html_named.jpg", b"<!DOCTYPE html><html><body>not a face</body></html>\n", None, "refuse", "HTML named .jpg")
    w.image("text_named.png", b"hello\n", None, "refuse", "text named .png")
    w.image("svg_named.png", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', None, "refuse", "SVG")
    broken = bytearray(png)
    broken[29] ^= 0xFF  # the IHDR CRC
    w.image("bad_crc.png", bytes(broken), None, "either", "PNG with a wrong IHDR CRC", tol=0.5)
    w.image("passwd_link.jpg", None, None, "refuse", "symlink to /etc/passwd named .jpg", link_to="/etc/passwd")
    w.image("webp.webp", _encode(pil, "WEBP", lossless=True), face, "ok", "lossless WebP", tol=0.5)
    w.image("bmp.bmp", _encode(pil, "BMP"), face, "ok", "BMP", tol=0.5)
    exif_bad = Image.Exif()
    exif_bad[0x0112] = 9  # not an orientation
    bad_exif = _encode(pil, "JPEG", quality=95, exif=exif_bad.tobytes())
    w.image("exif_bad.jpg", bad_exif, _decoded(bad_exif), "ok", "EXIF orientation 9 (invalid): ignored")


def _arrays(w: _Writer) -> None:
    face = base_face()
    np.save(w.root / "truth" / "array_face.npy", face)
    arrays = {
        "uint8": (face, "ok"),
        "float01": (face.astype(np.float32) / 255.0, "ok"),
        "uint16": (face.astype(np.uint16) * 257, "ok"),
        "gray_hw1": (face[:, :, :1].copy(), "ok"),
        "nan_pixel": (np.where(np.arange(face.size).reshape(face.shape) == 0, np.nan, face / 255.0), "refuse"),
        "inf_pixel": (np.where(np.arange(face.size).reshape(face.shape) == 0, np.inf, face / 255.0), "refuse"),
        "float255": (face.astype(np.float32), "refuse"),
        "negative_float": (face.astype(np.float32) / 255.0 - 0.5, "refuse"),
        "int64": (face.astype(np.int64), "either"),
        "five_channels": (np.zeros((SIDE, SIDE, 5), np.uint8), "refuse"),
        "empty": (np.zeros((0, SIDE, 3), np.uint8), "refuse"),
    }
    for name, (array, expect) in arrays.items():
        path = w.root / "arrays" / f"{name}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, array)
        truth = "truth/array_face.npy" if name in ("uint8", "float01", "uint16") else None
        if name == "gray_hw1":
            np.save(w.root / "truth" / "array_gray.npy", np.repeat(face[:, :, :1], 3, axis=2))
            truth = "truth/array_gray.npy"
        w.add(f"arr:{name}", "array", path, expect, f"numpy {array.dtype} {array.shape}", truth=truth, tol=1.0)


def build_corpus(root: str | os.PathLike, quick: bool = False) -> list[Case]:
    """Write the whole corpus under ``root`` (created) and return its cases; ``quick`` drops the 60 MB upload."""
    from hostile_files import other_files  # the non-image half lives next door (keeps both files short)

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    writer = _Writer(root)
    _images(writer)
    _arrays(writer)
    other_files(writer, quick=quick)
    (root / "cases.json").write_text(json.dumps([c.to_json() for c in writer.cases], indent=1), encoding="utf-8")
    return writer.cases


def load_cases(root: str | os.PathLike) -> list[Case]:
    """The cases of a corpus :func:`build_corpus` wrote."""
    return [Case(**c) for c in json.loads((Path(root) / "cases.json").read_text(encoding="utf-8"))]
