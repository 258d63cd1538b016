"""Where serving.predict writes, and what it never touches: a predictions file it did
not start (unless every line is one of its result lines) is refused untouched, a torn
last line is cut only in a file it marked; pictures get one name per photo and never
replace a file, link or folder the project did not write (a counted skip)."""

from __future__ import annotations

import contextlib
import io
import os

import numpy as np
import pytest

from test_serving_predict import jpeg_bytes, tiny_run  # noqa: F401  (tiny_run: a fixture)

RESULT = b'{"file": "a.jpg", "faces": [], "error": null}'


@pytest.mark.parametrize("content", [b'{"file": "thesis.pdf", "n": 1}', RESULT,
                                     RESULT + b"\n" + b'{"file": "b.jpg", "fa'])
def test_an_unmarked_file_without_a_final_newline_is_never_cut(tmp_path, content):
    """Even a tail that begins like a result line: only a file the project marked is cut."""
    from serving.output import PredictError, open_output

    out = tmp_path / "meta.json"
    out.write_bytes(content)
    with pytest.raises(PredictError, match=r"meta.json: (does not end with a newline and is not a predictions "
                                           r"file|line 1 is not a prediction line)"):
        open_output(str(out))
    assert out.read_bytes() == content and not (tmp_path / ".meta.json.dex-age").exists()


def test_an_unmarked_file_of_result_lines_only_is_continued_and_marked(tmp_path):
    from serving.output import is_marked, open_output

    out = tmp_path / "preds.jsonl"
    out.write_bytes(RESULT + b"\n")
    handle, done = open_output(str(out))
    handle.close()
    assert done == {"a.jpg"} and is_marked(str(out)) and out.read_bytes() == RESULT + b"\n"


@pytest.mark.parametrize("mark", ["notes", '{"kind": "predictions"}', "link"])
def test_a_file_in_the_place_of_the_mark_is_refused_untouched(tmp_path, mark):
    """A mark is the exact marker content, a regular file: a user's file of that name is theirs."""
    from serving.output import PredictError, open_output

    out, mark_file, victim = tmp_path / "preds.jsonl", tmp_path / ".preds.jsonl.dex-age", tmp_path / "victim"
    out.write_bytes(RESULT + b"\n" + b'{"fi')
    if mark == "link":
        victim.write_text("mine")
        os.symlink(victim, mark_file)
    else:
        mark_file.write_text(mark)
    with pytest.raises(PredictError, match=r"preds.jsonl: does not end with a newline"):
        open_output(str(out))
    out.write_bytes(RESULT + b"\n")
    with pytest.raises(PredictError, match=r"\.preds\.jsonl\.dex-age: is in the way of the mark"):
        open_output(str(out))
    assert out.read_bytes() == RESULT + b"\n"
    assert (victim.read_text() == "mine" and os.path.islink(mark_file)) if mark == "link" \
        else mark_file.read_text() == mark


def test_picture_names_keep_the_photos_path_below_their_common_folder(tmp_path):
    from serving.output import picture_root, picture_stem

    photos = [str(tmp_path / "a" / "me.jpg"), str(tmp_path / "b" / "me.jpg"), str(tmp_path / "a" / "x" / "y.png")]
    root = picture_root(photos)
    assert root == str(tmp_path)
    assert [picture_stem(p, root) for p in photos] == ["a/me", "b/me", "a/x/y"]
    assert picture_stem(photos[0], picture_root(photos[:1])) == "me"


def _photo(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes(np.full((40, 40, 3), value, np.uint8)))
    return str(path)


def _run(run_dir, pictures, photos):
    """predict.run with its stderr (progress notes and the tally line) as text."""
    from serving import predict

    err, real = io.StringIO(), predict.Progress
    predict.Progress = lambda total, label: real(total, label, stream=err)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = predict.run(predict.PredictConfig(detect=False, probs=True),
                                 predict.Job(model_dir=run_dir, pictures_dir=str(pictures), json=True), photos)
    finally:
        predict.Progress = real
    return status, err.getvalue()


def test_two_photos_of_one_name_get_two_pictures(tiny_run, tmp_path):
    from serving.output import is_our_picture

    photos = [_photo(tmp_path / "a" / "me.jpg", 40), _photo(tmp_path / "b" / "me.jpg", 200)]
    pictures = tmp_path / "album"
    status, _ = _run(tiny_run, pictures, photos)
    first, second = pictures / "a" / "me_annotated.png", pictures / "b" / "me_annotated.png"
    assert status == 0 and is_our_picture(str(first)) and is_our_picture(str(second))
    assert first.read_bytes() != second.read_bytes()
    assert sorted(os.listdir(pictures / "a")) == ["me_annotated.png", "me_face1_ages.png"]


def test_a_users_file_link_or_folder_of_a_pictures_name_is_skipped_and_counted(tiny_run, tmp_path):
    photos = [_photo(tmp_path / "photos" / name, 90) for name in ("me.jpg", "you.jpg", "them.jpg", "us.jpg")]
    pictures, victim = tmp_path / "album", tmp_path / "victim.png"
    pictures.mkdir()
    (pictures / "me_annotated.png").write_bytes(b"my own picture")
    victim.write_bytes(b"elsewhere")
    os.symlink(victim, pictures / "you_annotated.png")
    (pictures / "them_face1_ages.png").mkdir()
    status, err = _run(tiny_run, pictures, photos)
    assert status == 0
    assert (pictures / "me_annotated.png").read_bytes() == b"my own picture" and victim.read_bytes() == b"elsewhere"
    assert os.path.islink(pictures / "you_annotated.png") and os.listdir(pictures / "them_face1_ages.png") == []
    assert err.count("skipped: ") == 3 and "a file this project did not write is in the way" in err
    assert "(3 pictures not written: a file not the project's in the way, named above)" in err.splitlines()[-1]
    assert (pictures / "us_annotated.png").exists() and (pictures / "them_annotated.png").exists()


def test_a_picture_of_ours_is_replaced_by_a_rerun(tiny_run, tmp_path):
    photo = _photo(tmp_path / "photos" / "me.jpg", 90)
    pictures = tmp_path / "album"
    _run(tiny_run, pictures, [photo])
    before = os.stat(pictures / "me_annotated.png").st_ino
    status, err = _run(tiny_run, pictures, [photo])
    assert status == 0 and "skipped" not in err and os.stat(pictures / "me_annotated.png").st_ino != before
    assert sorted(os.listdir(pictures)) == ["me_annotated.png", "me_face1_ages.png"]
