import argparse

import pytest

from tool.cli import str2bool
from tool.dist import parse_shard, shard_ids
from tool.runner import run_per_image


def test_run_per_image_resume_failures_and_summary(tmp_path, capsys):
    ids = ["a", "b", "c", "d"]
    (tmp_path / "a.txt").write_text("done before")
    calls = []

    def process(image_id):
        calls.append(image_id)
        if image_id == "c":
            raise ValueError("broken annotation")
        (tmp_path / f"{image_id}.txt").write_text("ok")

    summary = run_per_image(ids, process, lambda i: [tmp_path / f"{i}.txt"], desc="test")
    assert calls == ["b", "c", "d"]
    assert (summary.done, summary.skipped) == (2, 1)
    assert summary.failed == [("c", "ValueError: broken annotation")]
    assert summary.exit_code == 1
    captured = capsys.readouterr()
    assert "done 2, skipped 1 (output exists), failed 1" in captured.out
    assert "c: ValueError: broken annotation" in captured.err

    calls.clear()
    again = run_per_image(ids, process, lambda i: [tmp_path / f"{i}.txt"], desc="test")
    assert calls == ["c"] and again.skipped == 3
    calls.clear()
    run_per_image(ids, process, lambda i: [tmp_path / f"{i}.txt"], desc="test", overwrite=True)
    assert calls == ids


def test_shards_partition_the_list(monkeypatch):
    ids = [str(i) for i in range(11)]
    parts = [shard_ids(ids, *parse_shard(f"{i}/3")) for i in range(3)]
    assert sorted(sum(parts, [])) == sorted(ids)
    assert parts[1] == ["1", "4", "7", "10"]
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert parse_shard(None) == (2, 4)
    for bad in ("3/3", "x", "1/0"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)


def test_str2bool():
    assert str2bool("False") is False and str2bool("True") is True
    assert str2bool("0") is False and str2bool("yes") is True
    with pytest.raises(argparse.ArgumentTypeError):
        str2bool("maybe")
    parser = argparse.ArgumentParser()
    parser.add_argument("--rw", type=str2bool, default=False)
    assert parser.parse_args(["--rw", "False"]).rw is False
    assert parser.parse_args(["--rw", "True"]).rw is True


def test_batches_are_prepared_before_their_images_and_skip_finished_ones(tmp_path):
    ids = ["a", "b", "c", "d", "e", "f"]
    (tmp_path / "b.txt").write_text("done before")
    events = []

    def prepare(batch):
        events.append(("prepare", *batch))
        if "e" in batch:
            raise RuntimeError("out of memory")

    def process(image_id):
        events.append(("process", image_id))
        (tmp_path / f"{image_id}.txt").write_text("ok")

    summary = run_per_image(ids, process, lambda i: [tmp_path / f"{i}.txt"], desc="test", batch_size=2,
                            prepare=prepare)
    assert events == [("prepare", "a", "c"), ("process", "a"), ("process", "c"),
                      ("prepare", "d", "e"), ("prepare", "f"), ("process", "f")]
    assert (summary.done, summary.skipped) == (3, 1)
    assert summary.failed == [("d", "RuntimeError: out of memory"), ("e", "RuntimeError: out of memory")]
