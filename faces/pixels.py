"""The one way an image file becomes RGB uint8 pixels, for ingest (source photos)
and prediction (users' photos): file check, size limit, decode, EXIF upright, RGB.

PIL's JPEG decoder gives the same pixels as TensorFlow's
`decode_jpeg(dct_method="INTEGER_ACCURATE")` (records.reader.JPEG_DCT_METHOD),
so a record's bytes decode identically in training, evaluation and prediction.
Imports PIL and numpy only: ingest's decode workers never import TensorFlow.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps

from errors import ProjectError
from faces.encoding import ENCODING_JPEG, ENCODING_RAW, JPEG_QUALITY

# Larger images are refused as decompression bombs (a 400-megapixel PNG of a few KB
# would take 1.2 GB decoded); PIL's own default limit, named here once.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS
warnings.simplefilter("ignore", Image.DecompressionBombWarning)   # refused below instead

# What counts as an image file where a folder is searched (serving.predict) or told
# apart from a data set (records.manifest.not_a_data_set).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

# The formats a face data set holds, recognised by content whatever the file is named,
# and decoded by Pillow's own code: an EPS, PDF or other format Pillow hands to an
# external program (EPS runs Ghostscript) is never opened as an image.
DECODE_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP")

# What Pillow raises on a malformed file besides its OSError: SyntaxError and
# ValueError (bad headers), struct.error (a mistyped EXIF tag), EOFError, IndexError,
# KeyError, TypeError, OverflowError, ZeroDivisionError (broken metadata).  Each is
# that file's error, never the end of the command reading many.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, struct.error, EOFError, IndexError, KeyError,
                 TypeError, OverflowError, ZeroDivisionError)

# 16-bit grayscale modes (PNG, TIFF): values 0..65535, mapped to 0..255 by / 257.
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class PixelError(ProjectError, ValueError):
    """A file that gives no pixels; the message names the file and why."""


def check_file(path: str) -> int:
    """The size of `path` in bytes, or PixelError if it is missing, a directory, empty,
    or not a regular file (a FIFO, socket or device is never opened: reading it could
    block forever)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise PixelError(f"{path}: no such file") from None
    except OSError as e:
        raise PixelError(f"{path}: cannot be read ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise PixelError(f"{path}: is a directory; pass the image files, or the folder as a PATH "
                         f"argument to search it")
    if not stat.S_ISREG(st.st_mode):
        raise PixelError(f"{path}: not a regular file (a FIFO, socket or device); it was not opened")
    if st.st_size == 0:
        raise PixelError(f"{path}: empty file")
    return st.st_size


def open_image(path) -> Image.Image:
    """Image.open limited to DECODE_FORMATS (`path`: a file name or a file object)."""
    return Image.open(path, formats=DECODE_FORMATS)


def check_size(image: Image.Image, name: str) -> None:
    """PixelError for an image of more than MAX_PIXELS pixels (before it is decoded)."""
    w, h = image.size
    if w * h > MAX_PIXELS:
        raise PixelError(too_large(name, f"{w}x{h} pixels"))


def too_large(name: str, what: str) -> str:
    return (f"{name}: {what}, more than the {MAX_PIXELS} pixel limit (a decompression bomb, "
            f"or a photo to downscale first)")


def upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says (cameras store portraits sideways)."""
    return ImageOps.exif_transpose(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Grayscale, CMYK, palette: plain convert.  16-bit grayscale: scaled to 8 bits
    (a plain convert clips everything above 255 to white).  Anything with
    transparency is composited on white first, so hidden colour under alpha=0
    (often garbage) never reaches the model."""
    if image.mode == "RGB":
        return image
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.float32)
        gray = np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def read_rgb(path: str) -> np.ndarray:
    """uint8 RGB pixels [H, W, 3] of an image file, upright; PixelError naming the
    file and the reason for anything that gives no pixels."""
    check_file(path)
    try:
        with open_image(path) as image:
            check_size(image, path)
            image.load()
            return np.asarray(to_rgb(upright(image)))
    except Image.DecompressionBombError:   # PIL refuses over twice its limit when opening
        raise PixelError(too_large(path, "an image")) from None
    except Image.UnidentifiedImageError:
        raise PixelError(f"{path}: not a readable image (none of {', '.join(DECODE_FORMATS)})") from None
    except DECODE_ERRORS as e:
        if isinstance(e, PixelError):
            raise
        raise PixelError(f"{path}: not a readable image ({e})") from None


# ----------------------------------------------------------------------------- stored pixels

def squash(image: Image.Image, size: int) -> Image.Image:
    """RGB, squashed to size x size (bilinear, PIL's antialiased resize): the pixels
    every stored record has."""
    rgb = to_rgb(image)
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.BILINEAR)
    return rgb


def encode(rgb: Image.Image, encoding: str, jpeg_quality: int) -> bytes:
    """The bytes a record stores as image/encoded."""
    if encoding == ENCODING_RAW:
        return rgb.tobytes()           # height*width*3 uint8, row-major RGB
    buf = io.BytesIO()
    rgb.save(buf, "JPEG", quality=jpeg_quality)
    return buf.getvalue()


def as_stored(pixels: np.ndarray, size: int, encoding: str = ENCODING_JPEG,
              jpeg_quality: int = JPEG_QUALITY) -> np.ndarray:
    """A framed face crop (uint8 [h, w, 3]) as a record of a data set stored at `size`
    px with `encoding` would hold it, decoded: squashed, encoded, decoded (PIL's JPEG
    decoder gives TensorFlow's pixels, see above).  Prediction passes each face it
    frames through this, so a photo's face reaches the model as the training faces did."""
    image = squash(Image.fromarray(np.ascontiguousarray(pixels)), size)
    if encoding == ENCODING_RAW:
        return np.asarray(image)
    with Image.open(io.BytesIO(encode(image, encoding, jpeg_quality))) as stored:
        return np.asarray(stored.convert("RGB"))
