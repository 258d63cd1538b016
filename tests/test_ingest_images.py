"""ingest.images: any source file -> exactly size x size RGB, or a counted skip."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image

from faces import detect
from ingest import images, sample
from records import schema

SIZE = 24


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


@pytest.mark.parametrize("quirk", ["rgb", "grayscale", "cmyk", "palette", "rgba", "tiny"])
def test_every_mode_becomes_rgb_of_the_image_size_with_its_age(quirk, sample_dir, sample_rows):
    rows = [r for r in sample_rows if r["category"] == "kept" and r["quirk"] == quirk]
    assert rows
    for encoding in schema.ENCODINGS:
        # tiny (1..3 px) files decode too once --min_face lets them through
        settings = images.ImageSettings(src=sample_dir, image_size=SIZE, encoding=encoding,
                                        min_face=1 if quirk == "tiny" else detect.MIN_FACE)
        for r in rows[:3]:
            data = images.process(settings, r["full_path"])
            rgb = _decode(data) if encoding == "jpeg" else \
                np.frombuffer(data, np.uint8).reshape(SIZE, SIZE, 3)
            assert rgb.shape == (SIZE, SIZE, 3) and rgb.dtype == np.uint8
            assert sample.age_from_pixels(rgb) == r["age"], (quirk, encoding, r["full_path"])


def test_one_by_one_no_face_image_is_skipped_or_with_min_face_1_upscaled(sample_dir, sample_rows):
    r = next(r for r in sample_rows if r["quirk"] == "no_face")
    with pytest.raises(images.SkipImage, match=r"a 1x1 px face, under --min_face=24") as e:
        images.process(images.ImageSettings(src=sample_dir, image_size=SIZE), r["full_path"])
    assert e.value.reason == images.FACE_TOO_SMALL
    rgb = _decode(images.process(images.ImageSettings(src=sample_dir, image_size=SIZE, min_face=1), r["full_path"]))
    assert rgb.shape == (SIZE, SIZE, 3)


def test_large_jpeg_uses_dct_scaling_and_keeps_the_level(tmp_path):
    Image.new("RGB", (640, 480), (90, 90, 90)).save(tmp_path / "big.jpg", quality=95)
    with Image.open(tmp_path / "big.jpg") as image:
        image.draft("RGB", (SIZE, SIZE))
        assert image.size == (80, 60)       # decoded at 1/8 scale, still >= SIZE
    rgb = np.asarray(images.load(str(tmp_path / "big.jpg"), SIZE))
    assert rgb.shape == (SIZE, SIZE, 3) and abs(rgb.mean() - 90) < 1.5


def test_unreadable_files_are_skipped_by_reason(sample_dir, sample_rows, tmp_path):
    settings = images.ImageSettings(src=sample_dir, image_size=SIZE)
    for quirk, reason in (("missing", images.MISSING), ("truncated", images.TRUNCATED),
                          ("tiny", images.FACE_TOO_SMALL)):
        r = next(r for r in sample_rows if r["category"] == "kept" and r["quirk"] == quirk)
        with pytest.raises(images.SkipImage) as e:
            images.process(settings, r["full_path"])
        assert e.value.reason == reason
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    with pytest.raises(images.SkipImage) as e:
        images.process(images.ImageSettings(src=str(tmp_path)), "junk.jpg")
    assert e.value.reason == images.UNDECODABLE


def test_paths_escaping_src_are_refused_without_being_opened(tmp_path, monkeypatch):
    src = tmp_path / "wiki_crop"
    (src / "00").mkdir(parents=True)
    outside = tmp_path / "secret.jpg"
    Image.new("RGB", (32, 32)).save(outside)
    (src / "00" / "link.jpg").symlink_to(outside)
    Image.new("RGB", (32, 32)).save(src / "00" / "fine.jpg")

    def no_open(*args, **kwargs):
        raise AssertionError("an unsafe path was opened")

    settings = images.ImageSettings(src=str(src), image_size=SIZE)
    monkeypatch.setattr(images.Image, "open", no_open)
    for rel in (str(outside), "../secret.jpg", "00/../../secret.jpg", "00/link.jpg", "", "/etc/hostname"):
        with pytest.raises(images.SkipImage) as e:
            images.process(settings, rel)
        assert e.value.reason == images.UNSAFE_PATH, rel
    monkeypatch.undo()
    assert images.process(settings, "00/../00/fine.jpg")  # stays inside: allowed


def test_process_chunk_reports_each_item(sample_dir, sample_rows):
    kept = [r for r in sample_rows if r["category"] == "kept"]
    chunk = [(i, r["full_path"], None) for i, r in enumerate(kept[:30])] + [(99, "../x.jpg", None)]
    images.init_worker(images.ImageSettings(src=sample_dir, image_size=SIZE))
    out = images.process_chunk(chunk)
    assert [i for i, _, _ in out] == [i for i, _, _ in chunk]
    for (i, data, reason), r in zip(out, kept[:30]):
        expected = {"missing": "missing", "truncated": "truncated", "tiny": "face_too_small"}.get(r["quirk"])
        assert reason == expected and (data is None) == (expected is not None)
    assert out[-1] == (99, None, images.UNSAFE_PATH)


@pytest.mark.slow
def test_a_whole_ingest_run_never_imports_tensorflow(sample_dir, tmp_path):
    # Neither the decode workers nor the writer need TensorFlow (records.wire frames
    # the records): the workers stay small, and no core is lost to importing it.
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "ingest", "--src", sample_dir,
                             "--out", str(tmp_path / "shards"), "--image_size", "32", "--workers", "2"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")]
    assert "ingest.pipeline" in imported and "records.writer" in imported
    assert not [m for m in imported if m.split(".")[0] in ("tensorflow", "keras")]


def test_faces_under_min_face_are_skipped_by_reason_before_decoding(tmp_path):
    Image.new("RGB", (20, 30), (90, 90, 90)).save(tmp_path / "small.jpg")
    Image.new("RGB", (30, 24), (90, 90, 90)).save(tmp_path / "fits.jpg")
    Image.new("RGB", (200, 200), (90, 90, 90)).save(tmp_path / "photo.jpg")
    settings = images.ImageSettings(src=str(tmp_path), image_size=SIZE)
    assert settings.min_face == detect.MIN_FACE == 24
    with pytest.raises(images.SkipImage) as e:
        images.process(settings, "small.jpg")
    assert e.value.reason == images.FACE_TOO_SMALL
    assert str(e.value).endswith("small.jpg: a 20x30 px face, under --min_face=24")
    assert images.process(settings, "fits.jpg")
    assert images.process(dataclasses.replace(settings, min_face=20), "small.jpg")   # the flag lowers it
    # A face box: its region with the margin, clipped to the photo, is what is stored.
    with pytest.raises(images.SkipImage, match=r"a 15x15 px face, under --min_face=24"):
        images.process(settings, "photo.jpg", (10, 10, 25, 25))
    assert images.process(dataclasses.replace(settings, margin=0.4), "photo.jpg", (10, 10, 25, 25))   # 27x27


def test_ingest_min_face_flag_becomes_the_config_and_the_resume_fingerprint():
    import types
    from ingest import flags as ingest_flags
    from ingest import pipeline
    given = {f.name: f.default for f in dataclasses.fields(pipeline.Config)}
    given.update(src="x", min_face=40, gender_male_code=None)
    config = ingest_flags.to_config({k: types.SimpleNamespace(value=v) for k, v in given.items()})
    assert config.min_face == 40 and pipeline.Config(src="x").min_face == detect.MIN_FACE
    assert pipeline.fingerprint(config, "sha")["flags"]["min_face"] == 40     # a changed --min_face is another command


def _jpeg_with_a_mistyped_exif_tag() -> bytes:
    """A JPEG whose EXIF Interop pointer (0xA005) is typed ASCII: Pillow's EXIF
    reader raises struct.error on it."""
    import struct
    entries = [(0x0112, 3, 1, b"\x06\x00\x00\x00"), (0xA005, 2, 1, b"\x06\x00\x00\x00")]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHI", tag, kind, count) + value for tag, kind, count, value in entries)
    exif = b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (90, 90, 90)).save(buf, "JPEG", exif=exif)   # over --min_face
    return buf.getvalue()


def test_a_mistyped_exif_tag_is_a_counted_skip_and_predicts_error_line(tmp_path):
    from faces import pixels

    (tmp_path / "bad.jpg").write_bytes(_jpeg_with_a_mistyped_exif_tag())
    images.init_worker(images.ImageSettings(src=str(tmp_path), image_size=SIZE))
    assert images.process_chunk([(0, "bad.jpg", None)]) == [(0, None, images.UNDECODABLE)]
    with pytest.raises(pixels.PixelError, match="bad.jpg: not a readable image"):
        pixels.read_rgb(str(tmp_path / "bad.jpg"))


def test_only_the_face_formats_are_decoded_never_eps_through_ghostscript(tmp_path, monkeypatch):
    """An EPS named photo.jpg is recognised by content and refused before Pillow
    would hand it to Ghostscript; the formats a face data set has all decode."""
    import subprocess
    from faces import pixels

    def no_program(*args, **kwargs):
        raise AssertionError(f"an external program was started: {args[0]}")

    monkeypatch.setattr(subprocess, "Popen", no_program)
    monkeypatch.setattr(subprocess, "check_call", no_program)
    eps = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n"
           b"(/etc/hostname) (r) file pop showpage\n%%EOF\n")
    (tmp_path / "photo.jpg").write_bytes(eps)
    with pytest.raises(images.SkipImage) as e:
        images.process(images.ImageSettings(src=str(tmp_path), image_size=SIZE), "photo.jpg")
    assert e.value.reason == images.UNDECODABLE
    with pytest.raises(pixels.PixelError, match="photo.jpg: not a readable image"):
        pixels.read_rgb(str(tmp_path / "photo.jpg"))
    for fmt in pixels.DECODE_FORMATS:
        name = f"face.{fmt.lower()}"
        Image.new("RGB", (32, 30), (10, 200, 30)).save(tmp_path / name, fmt)     # over --min_face
        assert pixels.read_rgb(str(tmp_path / name)).shape == (30, 32, 3), fmt
        assert images.process(images.ImageSettings(src=str(tmp_path), image_size=SIZE), name)
