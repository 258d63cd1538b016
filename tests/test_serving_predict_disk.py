"""A full or read-only disk while serving.predict writes its predictions file or its
pictures: the command ends with one line naming the file it was writing and the fix
(a failed write's OSError names no file, and the disk is no photo's fault)."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from test_serving_predict import jpeg_bytes, read_lines, tiny_run  # noqa: F401  (tiny_run: a fixture)

FULL = os.strerror(errno.ENOSPC)


def photos(tmp_path, n: int) -> list[str]:
    paths = []
    for i in range(n):
        path = tmp_path / f"photo{i}.jpg"
        path.write_bytes(jpeg_bytes(np.full((40 + i, 40, 3), 60 + 40 * i, np.uint8)))
        paths.append(str(path))
    return paths


def test_a_full_disk_while_writing_the_predictions_names_the_file(tiny_run, tmp_path, monkeypatch):
    from serving import predict

    opened = []

    class FullDisk:
        """The predictions file on a disk that fills up at the first line."""
        def __init__(self, handle):
            opened.append(handle)

        def write(self, data):
            raise OSError(errno.ENOSPC, FULL)        # as a buffered write raises it: no file name

    real_open = predict.open_output
    monkeypatch.setattr(predict, "open_output", lambda path: (FullDisk(real_open(path)[0]), set()))
    out = tmp_path / "preds.jsonl"
    with pytest.raises(predict.PredictError) as e:
        predict.run(predict.PredictConfig(detect=False), predict.Job(model_dir=tiny_run, jsonl=str(out)),
                    photos(tmp_path, 2))
    opened[0].close()
    assert str(e.value) == (f"{out}: cannot write the predictions ({FULL}); free space on that disk, then "
                            f"rerun the same command: it continues after the photos already in it")


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_full_disk_while_drawing_the_pictures_names_the_picture_and_stops(tiny_run, tmp_path, monkeypatch,
                                                                            code):
    from serving import predict

    drawn = []

    def full(image, faces, path):
        drawn.append(path)
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(predict.plots, "annotate", full)
    pictures = tmp_path / "pictures"
    with pytest.raises(predict.PredictError) as e:      # --pictures_dir draws each face's distribution: probs
        predict.run(predict.PredictConfig(detect=False, probs=True), predict.Job(model_dir=tiny_run, pictures_dir=str(pictures)),
                    photos(tmp_path, 3))
    picture = pictures / "photo0_annotated.png"
    assert drawn == [str(picture)]                  # the first failure ends the command
    assert str(e.value) == (f"{picture}: cannot write the annotated photo ({os.strerror(code)}); free space "
                            f"on that disk or pass --pictures_dir on another one, then rerun the same command")


def test_another_failure_drawing_a_picture_stays_that_photos_error(tiny_run, tmp_path, monkeypatch):
    from serving import predict

    def broken(image, faces, path):
        raise ValueError("cannot draw this one")

    monkeypatch.setattr(predict.plots, "annotate", broken)
    paths, out = photos(tmp_path, 2), tmp_path / "preds.jsonl"
    status = predict.run(predict.PredictConfig(detect=False, probs=True),
                         predict.Job(model_dir=tiny_run, pictures_dir=str(tmp_path / "pictures"), jsonl=str(out)), paths)
    assert status == 1 and [line["error"] for line in read_lines(out)] == [
        f"{p}: could not be processed (ValueError: cannot draw this one)" for p in paths]
