"""How a stored face crop is encoded: the manifest's "encoding" (str) and every
record's "image/format" (bytes), paired here once; the JPEG quality ingest stores with.
Imports nothing."""

from __future__ import annotations

ENCODING_JPEG = "jpeg"    # image/encoded holds a JPEG file
ENCODING_RAW = "raw"      # image/encoded holds height*width*3 uint8 bytes, row-major RGB
ENCODINGS = {ENCODING_JPEG: b"jpeg", ENCODING_RAW: b"raw"}   # encoding -> image/format
JPEG_QUALITY = 95         # ingest --jpeg_quality's default; the manifest records the one used
