"""The one way a source file becomes stored pixels: path check, decode (faces.pixels:
size limit, EXIF upright, RGB), resize, encode.

Runs inside ingest's decode workers, so it imports PIL and numpy only, never
TensorFlow (a worker pool of TF processes would cost seconds and GBs each), except
with `--reframe mtcnn`: then each worker loads TensorFlow and MTCNN at its first image
(`--reframe blazeface`: LiteRT and BlazeFace, no TensorFlow; faces.detect; the parent
never does, so the workers are forked small) and frames every face as prediction does
(read_rgb's pixels, faces.facebox.frame).
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass

from PIL import Image

import numpy as np

from faces import detect, facebox, framing
from faces.pixels import (DECODE_ERRORS, PixelError, check_size, encode, read_rgb, to_rgb, upright)  # noqa: F401  (to_rgb: API)
from faces.pixels import open_image, squash as fit
from records import schema

IMAGE_SIZE = schema.VGG_FACE_SIZE      # stored side in pixels (VGG-Face's input)
JPEG_QUALITY = schema.JPEG_QUALITY

# Why a file produced no record.  These are the manifest's `skipped` keys.
UNSAFE_PATH = "unsafe_path"   # absolute, or escapes --src: never opened
MISSING = "missing"
TRUNCATED = "truncated"
UNDECODABLE = "undecodable"
NOT_A_FILE = "not_a_file"     # a directory, FIFO, device...: never opened (reading could block)
BOX_OUTSIDE_PHOTO = "box_outside_photo"   # a face box (CSV) that misses the upright photo
NO_FACE_FOUND = "no_face_found"   # --reframe: the detector finds no face in the photo
FACE_TOO_SMALL = "face_too_small"   # the stored region (crop, or box plus margin) is under --min_face


class SkipImage(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class ImageSettings:
    src: str
    image_size: int = IMAGE_SIZE
    encoding: str = schema.ENCODING_JPEG
    jpeg_quality: int = JPEG_QUALITY
    margin: float = 0.0   # around a face box, when a row has one (faces.facebox)
    reframe: str = framing.REFRAME_NONE   # or a detector: every photo's face found and framed again
    align: bool = False   # --reframe: turn the face so its eyes are level
    min_face: int = detect.MIN_FACE   # smallest stored face side, px of the source photo


def safe_path(src: str, rel: str) -> str:
    """The file `rel` names inside `src`, or SkipImage(UNSAFE_PATH) if it is
    absolute or leaves `src` (by `..` or through a symlink).  A .mat from the
    internet decides these paths, so they are checked before anything is opened."""
    if not rel or "\0" in rel or os.path.isabs(rel) or rel.startswith(("/", "\\")):
        raise SkipImage(UNSAFE_PATH, rel)
    root = os.path.realpath(src)
    path = os.path.realpath(os.path.join(root, rel))
    if os.path.commonpath([root, path]) != root:
        raise SkipImage(UNSAFE_PATH, rel)
    return path


def require_regular_file(path: str) -> str:
    """`path` if it is a regular file (after symlinks), else SkipImage: a FIFO or a
    device would block or never end when read, so it is never opened."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as e:
        raise SkipImage(MISSING, path) from e
    except OSError as e:
        raise SkipImage(UNDECODABLE, f"{path}: {e.strerror}") from e
    if not stat.S_ISREG(mode):
        raise SkipImage(NOT_A_FILE, path)
    return path


def require_face_size(path: str, width: int, height: int, min_face: int) -> None:
    """SkipImage(FACE_TOO_SMALL) when the face region is narrower than `min_face`."""
    if min(width, height) < min_face:
        raise SkipImage(FACE_TOO_SMALL, f"{path}: a {width}x{height} px face, under --min_face={min_face}")


def load(path: str, size: int, box: facebox.Box | None = None, margin: float = 0.0,
         min_face: int = 0) -> Image.Image:
    """Decode `path` as an RGB image of exactly size x size (the whole crop is
    squashed, as the original recipe did; its crops are near-square).  With a
    face `box`: the box plus `margin`, clipped to the photo (faces.facebox); a box
    wholly outside the upright photo is SkipImage(BOX_OUTSIDE_PHOTO).  A crop, or
    region, with a side under `min_face` px is SkipImage(FACE_TOO_SMALL), told from
    the file's header before any pixel is decoded."""
    try:
        with open_image(path) as image:
            check_size(image, path)
            if box is None:
                require_face_size(path, *image.size, min_face)
            # JPEG DCT scaling: decode at 1/2, 1/4 or 1/8 scale when that still
            # leaves at least `size` pixels (of the crop, with a box); a 600 px
            # crop becomes 4x cheaper.
            full = image.size
            region = None if box is None else facebox.crop_region(box, margin, *full)
            if region is None:
                image.draft("RGB", (size, size))
            else:
                image.draft("RGB", (size * full[0] // max(1, region[2] - region[0]),
                                    size * full[1] // max(1, region[3] - region[1])))
            image.load()
            drafted = image.size
            image = upright(image)             # EXIF orientation applied, as in prediction
            if region is None:
                return fit(image, size)
            # The box is in the upright photo's pixels: its region there, in the (possibly
            # draft-scaled) decoded pixels, kept fractional: crop the whole pixels around
            # it (so resampling never reads beyond it), then resize exactly the fractional
            # box inside that crop.  (DCT scaling divides by 1, 2, 4 or 8 and rounds the
            # size up: the factor, not the size ratio, maps coordinates.)
            scale = 1 / max(1, round(max(full) / max(drafted)))
            width, height = (full[1], full[0]) if image.size != drafted else full
            if not facebox.overlaps(box, width, height):
                raise SkipImage(BOX_OUTSIDE_PHOTO, f"{path}: box {box} outside its "
                                                   f"{width}x{height} photo")
            region = facebox.crop_region(box, margin, width, height)
            require_face_size(path, region[2] - region[0], region[3] - region[1], min_face)
            x0, y0, x1, y1 = (v * scale for v in region)
            left, top = math.floor(x0), math.floor(y0)
            patch = to_rgb(image.crop((left, top, math.ceil(x1), math.ceil(y1))))
            return patch.resize((size, size), Image.BILINEAR,
                                box=(x0 - left, y0 - top, x1 - left, y1 - top))
    except FileNotFoundError as e:
        raise SkipImage(MISSING, path) from e
    except (Image.DecompressionBombError, PixelError) as e:
        raise SkipImage(UNDECODABLE, f"{path}: {e}") from e
    except DECODE_ERRORS as e:
        reason = TRUNCATED if "truncated" in str(e).lower() else UNDECODABLE
        raise SkipImage(reason, f"{path}: {e}") from e


def reframed(rgb: np.ndarray, faces: list[detect.Face], size: int, box: facebox.Box | None,
             settings: ImageSettings, path: str) -> Image.Image:
    """The face of photo `rgb` (read_rgb's pixels, as prediction reads them) among the
    detector's `faces`: the one nearest the source's `box` where it gives one, else the
    largest, framed (faces.facebox.frame: aligned, margin), squashed to size x size;
    SkipImage(NO_FACE_FOUND) when there is none."""
    if not faces:
        raise SkipImage(NO_FACE_FOUND, path)
    face = faces[0] if box is None else detect.nearest(faces, box)
    pixels, _ = facebox.frame(rgb, face.corners, settings.margin, face.angle(settings.align))
    return fit(Image.fromarray(np.ascontiguousarray(pixels)), size)


def read_photo(settings: ImageSettings, rel: str) -> tuple[str, np.ndarray]:
    """(path, read_rgb pixels) of `rel` for --reframe, or SkipImage."""
    path = require_regular_file(safe_path(settings.src, rel))
    try:
        return path, read_rgb(path)
    except PixelError as e:
        reason = TRUNCATED if "truncated" in str(e).lower() else UNDECODABLE
        raise SkipImage(reason, str(e)) from e


def process(settings: ImageSettings, rel: str, box: facebox.Box | None = None) -> bytes:
    """`rel` (a path from the source's table) -> the bytes stored as image/encoded."""
    if settings.reframe != framing.REFRAME_NONE:
        done = process_reframed(settings, [(rel, box)])[0]
        if isinstance(done, SkipImage):
            raise done
        return done
    rgb = load(require_regular_file(safe_path(settings.src, rel)), settings.image_size, box, settings.margin,
               settings.min_face)
    return encode(rgb, settings.encoding, settings.jpeg_quality)


def process_reframed(settings: ImageSettings, items: list[tuple[str, facebox.Box | None]]) -> list:
    """--reframe: [(rel, box)] -> [encoded bytes or SkipImage], the photos' faces found in
    one detector call (faces.detect.find_faces_batch)."""
    out, photos = [], []
    for rel, box in items:
        try:
            photos.append((len(out), *read_photo(settings, rel), box))
            out.append(None)
        except SkipImage as e:
            out.append(e)
    found = detect.find_faces_batch([rgb for _, _, rgb, _ in photos], settings.reframe, settings.min_face)
    for (i, path, rgb, box), faces in zip(photos, found):
        try:
            out[i] = encode(reframed(rgb, faces, settings.image_size, box, settings, path),
                            settings.encoding, settings.jpeg_quality)
        except SkipImage as e:
            out[i] = e
    return out


# --- the worker side of ingest's pool ---------------------------------------

_settings: ImageSettings | None = None


def init_worker(settings: ImageSettings, threads: int | None = None) -> None:
    """`threads`: the TensorFlow (LiteRT) threads a --reframe mtcnn (blazeface) worker may
    use (the pool's processes are the parallelism)."""
    global _settings
    _settings = settings
    if threads:
        detect.use_threads(threads)


def process_chunk(chunk: list[tuple[int, str, facebox.Box | None]]
                  ) -> list[tuple[int, bytes | None, str | None]]:
    """[(index, path, face box or None)] -> [(index, encoded or None, skip reason or None)]:
    a chunk per task amortizes the pickling round trip over several images."""
    if _settings.reframe != framing.REFRAME_NONE:
        done = process_reframed(_settings, [(rel, box) for _, rel, box in chunk])
        return [(index, None, d.reason) if isinstance(d, SkipImage) else (index, d, None)
                for (index, _, _), d in zip(chunk, done)]
    out = []
    for index, rel, box in chunk:
        try:
            out.append((index, process(_settings, rel, box), None))
        except SkipImage as e:
            out.append((index, None, e.reason))
    return out
