"""Tests for detect.io.video: decoding sampled frames from untrusted video files, and encoding.

Every clip is encoded here, in tmp_path, with this machine's OpenCV: tiny (64x48, at most
20 frames) so the whole module runs in seconds. Damaged files are made by cutting or
overwriting real encoded bytes, the way a failed upload or a bad disk would.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detect.core.errors import ConfigError, InputError
from detect.io.media import Limits, load
from detect.io.video import FrameSampling, probe_video, read_video
from detect.io.video_encode import CODECS, available_codecs, encode_video

W, H, FPS = 64, 48, 12.0
ID_STEP = 12  # grey level step of the block that tells which frame a decoded picture is


def _clip(n: int = 15, w: int = W, h: int = H) -> list[np.ndarray]:
    """Smooth frames (gradients, a moving square) that lossy codecs keep close to exact.

    The bottom-right 16x16 block is grey ``8 + ID_STEP * i``, so a decoded frame's block
    tells which source frame it was, whatever the sampler did.
    """
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 200 // w + 20, y * 200 // h + 20, np.full_like(x, 90)], axis=2)
    frames = []
    for i in range(n):
        f = base.copy()
        left = (4 * i) % (w - 26)
        f[6:16, left : left + 10] = 230
        f[h - 16 :, w - 16 :] = 8 + ID_STEP * i
        frames.append(f.astype(np.uint8))
    return frames


def _frame_id(frame: np.ndarray) -> int:
    block = frame[H - 12 : H - 4, W - 12 : W - 4].astype(float)
    return int(round((block.mean() - 8) / ID_STEP))


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _input_error(source, path: Path | None = None, **kw) -> InputError:
    with pytest.raises(InputError) as info:
        read_video(source, **kw)
    err = info.value
    if path is not None:
        assert str(path) in str(err), "every error message must name the file"
    return err


@pytest.fixture(scope="module")
def mjpeg() -> bytes:
    return encode_video(_clip(15), "mjpeg", FPS)


@pytest.fixture(scope="module")
def mjpeg20() -> bytes:
    return encode_video(_clip(20), "mjpeg", FPS)


# ----------------------------------------------------------------------------- roundtrip


@pytest.mark.parametrize("codec, fourcc, mad_max", [("mjpeg", "MJPG", 4.0), ("mp4v", "FMP4", 6.0)])
def test_encode_read_roundtrip(codec, fourcc, mad_max):
    clip = _clip(15)
    data = encode_video(clip, codec, FPS)
    video = read_video(data, sampling=FrameSampling("every", n=100))
    assert len(video.frames) == 15
    assert video.indices == list(range(15))
    assert np.allclose(video.times, [i / FPS for i in range(15)], atol=1e-3)
    for src, got in zip(clip, video.frames, strict=True):
        assert got.shape == (H, W, 3) and got.dtype == np.uint8
        assert np.abs(got.astype(float) - src).mean() < mad_max
    # RGB, not OpenCV's BGR: swapping the channels would be far off.
    assert np.abs(video.frames[0].astype(float) - clip[0][:, :, ::-1]).mean() > 20
    assert [_frame_id(f) for f in video.frames] == list(range(15))
    meta = video.meta
    assert meta["fps"] == pytest.approx(FPS)
    assert meta["frame_count"] == meta["declared_frames"] == 15
    assert meta["duration_s"] == pytest.approx(15 / FPS)
    assert (meta["width"], meta["height"]) == (W, H)
    assert meta["codec"] == fourcc
    assert meta["container"] == CODECS[codec][1].lstrip(".")
    assert meta["decoded_frames"] == 15
    json.dumps(meta)  # goes into scan records as is


def test_probe_reads_header_without_frames(mjpeg):
    info = probe_video(mjpeg)
    assert info == {
        "container": "avi",
        "codec": "MJPG",
        "width": W,
        "height": H,
        "fps": pytest.approx(FPS),
        "frame_count": 15,
        "duration_s": pytest.approx(15 / FPS),
    }


# ----------------------------------------------------------------------------- sampling


def test_uniform_sampling_spreads_over_whole_video(mjpeg20):
    video = read_video(mjpeg20, sampling=FrameSampling("uniform", n=5))
    assert video.indices[0] == 0 and video.indices[-1] == 19
    assert len(video.indices) == 5
    assert set(np.diff(video.indices)) <= {4, 5}
    assert [_frame_id(f) for f in video.frames] == video.indices
    assert video.meta["sampling"] == {"mode": "uniform", "n": 5, "every": 1}


def test_uniform_sampling_with_more_wanted_than_frames(mjpeg):
    video = read_video(mjpeg, sampling=FrameSampling("uniform", n=32))
    assert video.indices == list(range(15))


def test_every_sampling_caps_and_stops_early(mjpeg20):
    video = read_video(mjpeg20, sampling=FrameSampling("every", n=4, every=3))
    assert video.indices == [0, 3, 6, 9]
    assert [_frame_id(f) for f in video.frames] == [0, 3, 6, 9]
    assert np.allclose(video.times, [i / FPS for i in (0, 3, 6, 9)], atol=1e-3)
    assert video.meta["decoded_frames"] == 10  # nothing after the last wanted frame
    video = read_video(mjpeg20, sampling=FrameSampling("every", n=100, every=7))
    assert video.indices == [0, 7, 14]


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"mode": "random"}, "mode must be one of uniform, every"),
        ({"n": 0}, "n must be >= 1"),
        ({"every": 0}, "every must be >= 1"),
        ({"n": 2.5}, "n must be an integer"),
        ({"every": True}, "every must be an integer"),
    ],
)
def test_frame_sampling_validation(kw, match):
    with pytest.raises(ConfigError, match=match):
        FrameSampling(**kw)


def test_frame_sampling_describe_is_json():
    s = FrameSampling("every", n=8, every=np.int64(2))
    assert json.loads(json.dumps(s.describe())) == {"mode": "every", "n": 8, "every": 2}


# ----------------------------------------------------------------------------- sources


@pytest.mark.parametrize("codec, fmt", [("mjpeg", "avi"), ("mp4v", "mp4")])
def test_loaded_item_keeps_bytes_and_decodes(tmp_path, codec, fmt):
    data = encode_video(_clip(10), codec, FPS)
    path = _write(tmp_path, f"clip.{fmt}", data)
    item = load(path)
    assert (item.modality, item.format) == ("video", fmt)
    assert item.content == data and item.size_bytes == len(data)
    assert item.meta == {"container": fmt}
    video = read_video(item, sampling=FrameSampling(n=4))
    assert video.indices == [0, 3, 6, 9]
    assert read_video(path, sampling=FrameSampling(n=4)).indices == video.indices


@pytest.mark.parametrize("codec, fmt, wrong", [("mjpeg", "avi", "mp4"), ("mp4v", "mp4", "avi")])
def test_renamed_extension_is_sniffed_by_content(tmp_path, codec, fmt, wrong):
    path = _write(tmp_path, f"clip.{wrong}", encode_video(_clip(10), codec, FPS))
    assert load(path).format == fmt
    video = read_video(path)
    assert video.meta["container"] == fmt and len(video.frames) == 10


def test_not_a_video_is_refused(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_clip(1)[0]).save(buf, format="PNG")
    path = _write(tmp_path, "still.avi", buf.getvalue())
    err = _input_error(path, path)
    assert "image input not accepted here" in str(err)
    err = _input_error(load(path), path)
    assert "image input, not a video" in str(err)


def test_temporary_copy_is_always_removed(tmp_path, monkeypatch, mjpeg):
    staging = tmp_path / "staging"
    staging.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(staging))
    read_video(mjpeg)
    probe_video(mjpeg)
    _input_error(mjpeg[: len(mjpeg) // 2])
    assert list(staging.iterdir()) == []


# ----------------------------------------------------------------------------- damage


def test_random_bytes_after_riff_header(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    path = _write(tmp_path, "noise.avi", b"RIFF\x00\x10\x00\x00AVI LIST" + noise)
    err = _input_error(path, path)
    assert "corrupt or unsupported video (OpenCV/FFmpeg cannot open it)" in str(err)


def test_truncated_mjpeg_avi(tmp_path, mjpeg20):
    # FFmpeg opens the cut file (the header is intact) and decodes the first frames only.
    path = _write(tmp_path, "cut.avi", mjpeg20[: int(len(mjpeg20) * 0.4)])
    err = _input_error(path, path)
    assert "truncated or corrupt video: header declares 20 frames, only " in str(err)
    assert f"file has {path.stat().st_size} bytes, its RIFF header declares" in str(err)
    # The same file is refused whatever the sampling wants, as long as it wants the end...
    _input_error(path, path, sampling=FrameSampling("every", n=100))
    # ...and a sample that stops before the cut is still honest: those frames are intact.
    assert read_video(path, sampling=FrameSampling("every", n=2)).indices == [0, 1]


def test_cut_before_first_frame(tmp_path, mjpeg20):
    # Headers and the start of the frame list, but no picture: FFmpeg opens, grabs nothing.
    path = _write(tmp_path, "stub.avi", mjpeg20[: mjpeg20.index(b"movi") + 12])
    err = _input_error(path, path)
    assert "no decodable frames (corrupt or truncated video)" in str(err)
    assert "its RIFF header declares" in str(err)
    # Cut inside the headers, FFmpeg cannot even open it.
    path = _write(tmp_path, "head.avi", mjpeg20[: mjpeg20.index(b"movi")])
    assert "cannot open it" in str(_input_error(path, path))


def test_cut_inside_mp4_index(tmp_path):
    data = encode_video(_clip(15), "mp4v", FPS)
    # Only the end of the index lost (the chunk offsets): FFmpeg opens it, finds no frame.
    path = _write(tmp_path, "cut-index.mp4", data[:-100])
    err = str(_input_error(path, path))
    assert "no decodable frames" in err and "; the 'moov' index is cut off (top-level box" in err
    # More of it lost: FFmpeg cannot open it at all.
    path = _write(tmp_path, "cut-more.mp4", data[:-300])
    err = str(_input_error(path, path))
    assert "cannot open it); the 'moov' index is cut off" in err


def test_truncated_mp4_cannot_open(tmp_path):
    # mp4 muxers write the 'moov' index last, so a cut mp4 has no index at all.
    data = encode_video(_clip(15), "mp4v", FPS)
    path = _write(tmp_path, "cut.mp4", data[: int(len(data) * 0.6)])
    err = _input_error(path, path)
    assert "cannot open it" in str(err)
    assert "top-level box 'mdat'" in str(err) and "no 'moov' index" in str(err)


@pytest.mark.parametrize("codec, payload", [("mjpeg", b"movi"), ("mp4v", b"mdat")])
def test_middle_of_frame_data_overwritten_with_zeros(tmp_path, codec, payload):
    # A bad sector inside the frame data: the file opens, decoding stops at the hole.
    data = bytearray(encode_video(_clip(15), codec, FPS))
    at = data.index(payload)
    size = int.from_bytes(data[at - 4 : at], "little" if codec == "mjpeg" else "big")
    third = size // 3
    data[at + third : at + 2 * third] = bytes(third)
    path = _write(tmp_path, f"holed{CODECS[codec][1]}", bytes(data))
    err = _input_error(path, path)
    assert "truncated or corrupt video: header declares 15 frames, only " in str(err)


def test_mp4_with_index_overwritten(tmp_path):
    data = bytearray(encode_video(_clip(15), "mp4v", FPS))
    moov = data.index(b"moov") - 4
    data[moov:] = bytes(len(data) - moov)
    path = _write(tmp_path, "noindex.mp4", bytes(data))
    err = _input_error(path, path)
    assert "cannot open it" in str(err) and "no 'moov' index box" in str(err)


def _avi_chunks(data: bytes) -> tuple[int, list[bytes]]:
    """Offset of the 'movi' list and the raw frame chunks inside it."""
    movi = data.index(b"movi") - 8
    assert data[movi : movi + 4] == b"LIST"
    size = struct.unpack("<I", data[movi + 4 : movi + 8])[0]
    chunks, off = [], movi + 12
    while off < movi + 8 + size:
        n = struct.unpack("<I", data[off + 4 : off + 8])[0]
        chunks.append(data[off : off + 8 + n + (n & 1)])
        off += 8 + n + (n & 1)
    return movi, chunks


def _with_null_frames(avi: bytes) -> bytes:
    """Insert an empty "repeat the previous frame" chunk before every frame but the first,
    as capture software does (OpenCV's own tree.avi is 376 such entries and 68 pictures).
    The header then declares 2n-1 frames; FFmpeg delivers n, timed where they belong."""
    movi, chunks = _avi_chunks(avi)
    null = b"00dc" + struct.pack("<I", 0)
    body, index = b"movi", b""
    for i, chunk in enumerate(chunks):
        for part, flags in ([(null, 0)] if i else []) + [(chunk, 0x10)]:
            size = struct.unpack("<I", part[4:8])[0]
            index += b"00dc" + struct.pack("<III", flags, len(body), size)
            body += part
    declared = 2 * len(chunks) - 1
    out = bytearray(avi[:movi] + b"LIST" + struct.pack("<I", len(body)) + body)
    out += b"idx1" + struct.pack("<I", len(index)) + index
    out[4:8] = struct.pack("<I", len(out) - 8)
    for tag, at in ((b"avih", 16), (b"strh", 32)):
        pos = out.index(tag) + 8 + at
        out[pos : pos + 4] = struct.pack("<I", declared)
    return bytes(out)


def test_null_frames_are_not_truncation(tmp_path, mjpeg):
    path = _write(tmp_path, "drops.avi", _with_null_frames(mjpeg))
    assert probe_video(path)["frame_count"] == 29
    video = read_video(path, sampling=FrameSampling(n=5))
    meta = video.meta
    assert (meta["declared_frames"], meta["frame_count"]) == (29, 15)
    assert meta["duration_s"] == pytest.approx(29 / FPS)
    assert video.indices[0] == 0 and video.indices[-1] == 14
    assert [_frame_id(f) for f in video.frames] == video.indices
    # Timestamps, not the decoded count, say when each picture is shown.
    assert np.allclose(video.times, [2 * i / FPS for i in video.indices], atol=1e-3)
    every = read_video(path, sampling=FrameSampling("every", n=100, every=5))
    assert every.indices == [0, 5, 10]
    # Cutting that file is still truncation: its last picture is far from the declared end.
    data = path.read_bytes()
    cut = _write(tmp_path, "drops-cut.avi", data[: int(len(data) * 0.6)])
    assert "header declares 29 frames" in str(_input_error(cut, cut))


def _without_frame_count(avi: bytes) -> bytes:
    """Zero the AVI header's frame counts: FFmpeg then reports the length as unknown."""
    out = bytearray(avi)
    for tag, at in ((b"avih", 16), (b"strh", 32)):
        pos = out.index(tag) + 8 + at
        out[pos : pos + 4] = bytes(4)
    return bytes(out)


def test_unknown_frame_count_is_counted_by_decoding(tmp_path, mjpeg20):
    path = _write(tmp_path, "nocount.avi", _without_frame_count(mjpeg20))
    info = probe_video(path)
    assert info["frame_count"] is None and info["duration_s"] is None
    video = read_video(path, sampling=FrameSampling(n=4))
    assert video.indices == [0, 6, 13, 19]
    assert [_frame_id(f) for f in video.frames] == video.indices
    assert video.meta["frame_count"] == 20 and video.meta["declared_frames"] is None
    assert video.meta["duration_s"] == pytest.approx(20 / FPS)
    every = read_video(path, sampling=FrameSampling("every", n=3, every=2))
    assert every.indices == [0, 2, 4] and every.meta["frame_count"] == 20
    err = _input_error(path, path, limits=Limits(max_frames=12))
    assert "too many frames (more than limit 12)" in str(err)
    err = _input_error(path, path, limits=Limits(max_duration_s=1.0))
    assert "> limit 1 s" in str(err)


# ----------------------------------------------------------------------------- limits


@pytest.mark.parametrize(
    "limits, message",
    [
        (Limits(max_pixels=W * H - 1), f"frame {W}x{H} = {W * H} pixels > limit {W * H - 1}"),
        (Limits(max_frames=10), "too many frames (15 declared > limit 10)"),
        (Limits(max_duration_s=1.0), "video too long (1.2 s > limit 1 s)"),
    ],
)
def test_limits_refuse_before_decoding(tmp_path, mjpeg, limits, message):
    path = _write(tmp_path, "clip.avi", mjpeg)
    assert message in str(_input_error(path, path, limits=limits))
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        probe_video(path, limits)


def test_error_name_can_be_given(mjpeg):
    err = _input_error(mjpeg[:7000], name="upload-17")
    assert str(err).startswith("upload-17: ")
    assert _input_error(mjpeg[:7000]).path == "<bytes>"


# ----------------------------------------------------------------------------- encoding


def test_available_codecs_are_real():
    codecs = available_codecs()
    assert "mjpeg" in codecs and set(codecs) <= set(CODECS)
    for codec in codecs:
        data = encode_video(_clip(3), codec, FPS)
        assert read_video(data).meta["frame_count"] == 3


def test_unavailable_codec_is_a_config_error():
    missing = [c for c in CODECS if c not in available_codecs()]
    if not missing:
        pytest.skip("this OpenCV build encodes every codec in CODECS")
    with pytest.raises(ConfigError, match=f"this OpenCV build cannot encode {missing[0]}; "
                                          "available: mjpeg"):
        encode_video(_clip(2), missing[0])


@pytest.mark.parametrize(
    "frames, kw, match",
    [
        (_clip(2) + _clip(1, w=32, h=24), {}, "same shape: frame 0 is"),
        ([], {}, "at least one frame"),
        ([f.astype(np.float32) for f in _clip(2)], {}, "RGB uint8"),
        ([f[:, :, 0] for f in _clip(2)], {}, "RGB uint8"),
        (_clip(2), {"codec": "theora"}, "unknown video codec 'theora'"),
        (_clip(2), {"fps": 0.0}, "fps must be a positive number"),
    ],
)
def test_encode_video_rejects_bad_input(frames, kw, match):
    with pytest.raises(ConfigError, match=match):
        encode_video(frames, **kw)


@pytest.mark.parametrize("codec", ["mjpeg", "mp4v"])
def test_odd_sizes_are_padded_not_cropped(codec):
    clip = _clip(4, w=63, h=47)
    video = read_video(encode_video(clip, codec, FPS))
    frame = video.frames[0]
    assert frame.shape == (48, 64, 3)
    assert np.abs(frame[:47, :63].astype(float) - clip[0]).mean() < 6.0
    # The added column repeats the last one (no black edge for a detector to find).
    assert np.abs(frame[:47, 63].astype(float) - clip[0][:, 62]).mean() < 8.0


def test_import_is_cheap():
    code = "import sys, detect.io.video; assert 'cv2' not in sys.modules, 'cv2 imported'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
