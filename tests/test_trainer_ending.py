"""The last lines of `python -m trainer`: the headline and the next commands."""

from trainer.ending import ending


def test_the_ending_gives_the_headline_against_the_mean_and_the_next_commands_with_the_run_filled_in():
    report = {"split": "test", "mae": 5.18, "baseline_mae_predicting_train_mean": 20.76, "count": 2933}
    text = ending("runs/utk", report).splitlines()
    assert text[0] == ("runs/utk: test MAE 5.18 years on 2933 faces, 4.0x better than always answering the "
                       "training mean (20.76)")
    assert text[1] == "Next:"
    commands = [line.split("  #")[0].strip() for line in text[2:]]
    assert commands == ["python -m trainer.evaluate --model_dir runs/utk --records shards/OTHER",
                        "python -m serving.predict --model_dir runs/utk photo.jpg",
                        "python -m serving.export --model_dir runs/utk --out exports/utk"]
    assert len({line.index("#") for line in text[2:]}) == 1      # the comments line up


def test_the_ending_says_when_the_model_is_no_better_than_the_mean_and_when_nothing_was_evaluated():
    worse = {"split": "test", "mae": 21.0, "baseline_mae_predicting_train_mean": 20.0, "count": 10}
    assert "no better than always answering the training mean (20.00)" in ending("runs/x", worse)
    text = ending("my runs/x/", None).splitlines()
    assert text[0] == "my runs/x/: trained; no evaluation ran (--noevaluate)"
    assert text[2].startswith("  python -m trainer.evaluate --model_dir 'my runs/x/'  ")
    assert "--out exports/x" in text[-1]
