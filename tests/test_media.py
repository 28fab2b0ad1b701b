"""Tests for detect.io.media: bounded loading, sniffing and path expansion.

All fixtures are generated in tmp_path so nothing binary is shipped with the repo.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detect.core.errors import InputError
from detect.io.media import Limits, iter_paths, load, load_bytes
from detect.io.sniff import sniff

MAIN = Path(__file__).resolve().parents[1]


def _gradient(w: int = 32, h: int = 24) -> Image.Image:
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([x * 255 // w, y * 255 // h, (x + y) % 256], axis=2).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _load_error(path: Path, limits: Limits | None = None, **kw) -> InputError:
    with pytest.raises(InputError) as info:
        load(path, limits or Limits(), **kw)
    err = info.value
    assert str(path) in str(err), "every error message must name the file"
    assert err.path == str(path)
    return err


# ----------------------------------------------------------------------------- images


@pytest.mark.parametrize(
    "fmt, ext, expected",
    [
        ("PNG", "png", "png"),
        ("JPEG", "jpg", "jpeg"),
        ("WEBP", "webp", "webp"),
        ("GIF", "gif", "gif"),
        ("BMP", "bmp", "bmp"),
        ("TIFF", "tif", "tiff"),
    ],
)
def test_good_images_load(tmp_path, fmt, ext, expected):
    img = _gradient(32, 24)
    path = _write(tmp_path, f"ok.{ext}", _encode(img, fmt))
    item = load(path)
    assert item.modality == "image"
    assert item.format == expected
    assert item.content.shape == (24, 32, 3)
    assert item.content.dtype == np.uint8
    assert item.shape == (24, 32, 3)
    assert item.meta["width"] == 32 and item.meta["height"] == 24
    assert isinstance(item.meta["info_keys"], list)
    assert item.path == str(path)
    assert item.size_bytes == path.stat().st_size
    import hashlib

    assert item.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_lossless_pixels_are_exact(tmp_path):
    img = _gradient(16, 16)
    item = load(_write(tmp_path, "a.png", _encode(img, "PNG")))
    assert np.array_equal(item.content, np.asarray(img))


def test_png_named_jpg_is_sniffed_as_png(tmp_path):
    path = _write(tmp_path, "liar.jpg", _encode(_gradient(), "PNG"))
    item = load(path)
    assert item.format == "png"


def test_truncated_jpeg(tmp_path):
    data = _encode(_gradient(64, 64), "JPEG", quality=95)
    path = _write(tmp_path, "cut.jpg", data[: len(data) // 2])
    err = _load_error(path)
    assert "truncated" in err.problem


def test_truncated_jpeg_even_if_pil_global_allows_it(tmp_path):
    from PIL import ImageFile

    data = _encode(_gradient(64, 64), "JPEG", quality=95)
    path = _write(tmp_path, "cut.jpg", data[: len(data) // 2])
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        err = _load_error(path)
        assert "truncated" in err.problem
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True, "global setting must be restored"
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def test_corrupt_png_header(tmp_path):
    data = bytearray(_encode(_gradient(), "PNG"))
    data[16:24] = b"\xff" * 8  # garbage width/height in IHDR, CRC no longer matches
    err = _load_error(_write(tmp_path, "bad.png", bytes(data)))
    assert err.problem.startswith(("cannot decode png image", "truncated or corrupt")) or (
        "decompression bomb" in err.problem
    )


def test_decompression_bomb_via_limits(tmp_path):
    path = _write(tmp_path, "b.png", _encode(_gradient(20, 20), "PNG"))
    err = _load_error(path, Limits(max_pixels=100))
    assert "decompression bomb" in err.problem
    assert "20x20 = 400 pixels > limit 100" in err.problem


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(tag: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(tag + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [9000, 20000, 60000])
def test_decompression_bomb_header(tmp_path, side):
    # 81M (our limit), 400M (PIL warning range) and 3.6G (PIL error range) pixels.
    path = _write(tmp_path, "bomb.png", _png_header_only(side, side))
    err = _load_error(path)
    assert "decompression bomb" in err.problem
    assert f"{side}x{side} = {side * side} pixels" in err.problem


def test_truncated_webp(tmp_path):
    data = _encode(_gradient(64, 64), "WEBP")
    err = _load_error(_write(tmp_path, "cut.webp", data[: len(data) // 2]))
    assert "truncated" in err.problem


@pytest.mark.parametrize("side", [9000, 20000, 60000])
def test_decompression_bomb_gif_header(tmp_path, side):
    data = bytearray(_encode(Image.new("P", (10, 10)), "GIF"))
    data[6:10] = struct.pack("<HH", side, side)  # logical screen size
    err = _load_error(_write(tmp_path, "bomb.gif", bytes(data)))
    assert f"decompression bomb: {side}x{side} = {side * side} pixels" in err.problem


def test_too_small_image(tmp_path):
    path = _write(tmp_path, "tiny.png", _encode(_gradient(4, 20), "PNG"))
    err = _load_error(path)
    assert "too small to analyse (4x20)" in err.problem


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "1", "CMYK", "I;16", "I", "F"])
def test_modes_become_rgb_uint8(tmp_path, mode):
    base = _gradient(20, 10)
    if mode == "I;16":
        arr = (np.arange(200, dtype=np.uint16).reshape(10, 20) * 300).astype(np.uint16)
        img = Image.fromarray(arr)
        assert img.mode == "I;16"
    else:
        img = base.convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "I", "F") else "PNG"
    item = load(_write(tmp_path, f"m.{fmt.lower()}", _encode(img, fmt)))
    assert item.content.shape == (10, 20, 3)
    assert item.content.dtype == np.uint8
    assert item.content.flags["C_CONTIGUOUS"]
    if mode in ("LA", "RGBA"):
        assert item.meta["had_alpha"] is True
    if mode == "I;16":
        # scaled, not clipped: a 16-bit ramp must not saturate to white
        assert item.content.max() < 255 or item.content.min() < 200
        assert len(np.unique(item.content)) > 10


def test_rgba_alpha_is_dropped_not_composited(tmp_path):
    arr = np.zeros((10, 10, 4), np.uint8)
    arr[..., 0] = 200
    arr[..., 3] = 0  # fully transparent: compositing over white would give 255
    path = _write(tmp_path, "a.png", _encode(Image.fromarray(arr, "RGBA"), "PNG"))
    item = load(path)
    assert item.meta["had_alpha"] is True
    assert item.meta["mode"] == "RGBA"
    assert (item.content[..., 0] == 200).all()
    assert (item.content[..., 1:] == 0).all()


def test_palette_with_transparency_records_alpha(tmp_path):
    img = _gradient(16, 16).convert("P")
    path = _write(tmp_path, "p.png", _encode(img, "PNG", transparency=0))
    item = load(path)
    assert item.meta["mode"] == "P"
    assert item.meta["had_alpha"] is True
    assert item.content.shape == (16, 16, 3)


def test_animated_gif_uses_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 12), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    item = load(_write(tmp_path, "anim.gif", buf.getvalue()))
    assert item.meta["frames"] == 3
    assert item.content.shape == (12, 16, 3)
    assert tuple(item.content[0, 0]) == (255, 0, 0)


def test_animated_webp_uses_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 12), c) for c in [(250, 0, 0), (0, 250, 0)]]
    buf = io.BytesIO()
    frames[0].save(buf, format="WEBP", save_all=True, append_images=frames[1:], lossless=True)
    item = load(_write(tmp_path, "anim.webp", buf.getvalue()))
    assert item.meta["frames"] == 2
    assert item.content.shape == (12, 16, 3)
    assert tuple(item.content[0, 0]) == (250, 0, 0)


def test_exif_orientation_recorded_not_applied(tmp_path):
    img = _gradient(32, 16)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW" when displayed
    path = _write(tmp_path, "o.jpg", _encode(img, "JPEG", exif=exif.tobytes()))
    item = load(path)
    assert item.meta["exif_orientation"] == 6
    assert "exif" in item.meta["info_keys"]
    assert item.content.shape == (16, 32, 3)  # stored orientation, not rotated


# ----------------------------------------------------------------------------- files


def test_empty_file(tmp_path):
    err = _load_error(_write(tmp_path, "empty.png", b""))
    assert err.problem == "empty file (0 bytes)"


def test_missing_file(tmp_path):
    err = _load_error(tmp_path / "nope.png")
    assert err.problem == "no such file"


def test_directory(tmp_path):
    (tmp_path / "d").mkdir()
    err = _load_error(tmp_path / "d")
    assert "is a directory" in err.problem


def test_random_bytes_unrecognised(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    err = _load_error(_write(tmp_path, "rand.jpg", data))
    assert err.problem.startswith("unrecognised format")
    assert data[:8].hex() in err.problem


def test_too_large_file(tmp_path):
    path = _write(tmp_path, "big.txt", b"hello world\n" * 100)
    err = _load_error(path, Limits(max_bytes=1000))
    assert err.problem == "file too large (1200 bytes > limit 1000)"


def test_modalities_filter(tmp_path):
    path = _write(tmp_path, "a.png", _encode(_gradient(), "PNG"))
    err = _load_error(path, modalities={"text"})
    assert err.problem == "image input not accepted here"
    assert load(path, modalities=("image", "video")).modality == "image"


def test_load_bytes_matches_load(tmp_path):
    data = _encode(_gradient(), "PNG")
    a = load(_write(tmp_path, "a.png", data))
    b = load_bytes(data, "<stdin>")
    assert a.sha256 == b.sha256 and np.array_equal(a.content, b.content)
    assert b.path == "<stdin>"
    with pytest.raises(InputError, match="^<stdin>: empty file"):
        load_bytes(b"", "<stdin>")


# ----------------------------------------------------------------------------- video


@pytest.mark.parametrize(
    "head, fmt",
    [
        (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2mp41", "mp4"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  ", "mov"),
        (b"RIFF\x00\x10\x00\x00AVI LIST", "avi"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "webm"),
        (b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\x82\x88matroska", "mkv"),
    ],
)
def test_video_sniffed_not_decoded(tmp_path, head, fmt):
    assert sniff(head) == ("video", fmt)
    path = _write(tmp_path, "clip.bin", head + b"\x00" * 100)
    item = load(path)
    assert item.modality == "video" and item.format == fmt
    assert item.content == path.read_bytes()  # kept for detect.io.video, decoded on demand
    assert item.meta == {"container": fmt}


@pytest.mark.parametrize(
    "head, expected",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00", ("image", "png")),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", ("image", "jpeg")),
        (b"GIF89a\x10\x00", ("image", "gif")),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", ("image", "webp")),
        (b"II*\x00\x08\x00\x00\x00", ("image", "tiff")),
        (b"MM\x00*\x00\x00\x00\x08", ("image", "tiff")),
        (b"BM" + b"\x00" * 12 + b"\x28\x00\x00\x00", ("image", "bmp")),
        (b"BMW makes cars, not bitmaps.\n", ("text", "text")),
        (b"plain words\n", ("text", "text")),
        ("caf\u00e9".encode()[:-1], ("text", "text")),  # multibyte char cut by the head
        (b"\xef\xbb\xbfhi", ("text", "text")),
        (b"\xff\xfeh\x00i\x00", ("text", "text")),
        (b"\x00\x00\x00\x18ftypavif", None),  # still image in an ISO-BMFF box
        (b"\x7fELF\x02\x01\x01\x00", None),
        (b"", None),
    ],
)
def test_sniff(head, expected):
    assert sniff(head) == expected


# ----------------------------------------------------------------------------- text


def test_good_utf8_text(tmp_path):
    text = "Hello, w\u00f6rld \u2014 \U0001f600\nsecond line\n"
    item = load(_write(tmp_path, "t.txt", text.encode("utf-8")))
    assert item.modality == "text"
    assert item.content == text
    assert item.meta["chars"] == len(text)
    assert item.meta["lines"] == 2


def test_utf8_bom_text(tmp_path):
    item = load(_write(tmp_path, "t.txt", b"\xef\xbb\xbfone\ntwo"))
    assert item.content == "one\ntwo"
    assert item.meta["lines"] == 2


def test_utf16_bom_text(tmp_path):
    text = "Gr\u00fc\u00dfe aus UTF-16\n"
    item = load(_write(tmp_path, "t16.txt", text.encode("utf-16")))
    assert item.modality == "text"
    assert item.content == text


def test_bad_utf8_text(tmp_path):
    # Latin-1 text: not valid UTF-8, but clearly text, so the error says where it breaks.
    data = "na\u00efve caf\u00e9\n".encode("latin-1")
    err = _load_error(_write(tmp_path, "latin1.txt", data))
    assert err.problem.startswith("bad UTF-8 at byte 2: ")


def test_bad_utf8_after_sniff_window(tmp_path):
    data = b"a" * 10000 + b"\xff tail"
    err = _load_error(_write(tmp_path, "late.txt", data))
    assert err.problem == "bad UTF-8 at byte 10000: invalid start byte"


def test_truncated_utf8_at_end_of_file(tmp_path):
    data = "caf\u00e9".encode()[:-1]
    err = _load_error(_write(tmp_path, "cut.txt", data))
    assert err.problem.startswith("bad UTF-8 at byte 3")


def test_nul_in_text(tmp_path):
    data = b"\xef\xbb\xbfabc\x00def"
    err = _load_error(_write(tmp_path, "nul.txt", data))
    assert err.problem == "binary data (NUL bytes), not text"


def test_text_too_long(tmp_path):
    path = _write(tmp_path, "long.txt", b"x" * 101)
    err = _load_error(path, Limits(max_chars=100))
    assert err.problem == "text too long (101 characters > limit 100)"


def test_whitespace_only_text(tmp_path):
    err = _load_error(_write(tmp_path, "ws.txt", b" \n\t \r\n"))
    assert err.problem == "empty text (only whitespace)"


# ----------------------------------------------------------------------------- paths


def test_iter_paths(tmp_path):
    root = tmp_path / "root"
    (root / "b" / "deep").mkdir(parents=True)
    (root / ".hidden_dir").mkdir()
    for rel in ["a.txt", "b/c.txt", "b/deep/d.png", ".hidden.txt", ".hidden_dir/e.txt"]:
        (root / rel).write_text("x")
    missing = tmp_path / "missing.jpg"

    got = list(iter_paths([root, root / "a.txt", str(root / "b"), missing]))
    assert got == [
        root / "a.txt",
        root / "b" / "c.txt",
        root / "b" / "deep" / "d.png",
        missing,
    ]
    assert all(isinstance(p, Path) for p in got)

    shallow = list(iter_paths([root], recursive=False))
    assert shallow == [root / "a.txt"]


def test_iter_paths_dedupes_symlinks_and_survives_loops(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    (root / "f.txt").write_text("x")
    os.symlink(root / "f.txt", root / "link.txt")
    os.symlink(root, root / "loop")
    got = list(iter_paths([root]))
    assert got == [root / "f.txt"]


def test_iter_paths_explicit_hidden_file_is_kept(tmp_path):
    p = tmp_path / ".secret.txt"
    p.write_text("x")
    assert list(iter_paths([p])) == [p]


# ----------------------------------------------------------------------------- imports


def test_import_does_not_pull_heavy_modules():
    code = (
        "import detect.io.media, sys; "
        "assert 'torch' not in sys.modules; "
        "assert 'cv2' not in sys.modules; "
        "assert 'PIL.Image' not in sys.modules"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(MAIN), env.get("PYTHONPATH")]))
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=MAIN, env=env, capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr
