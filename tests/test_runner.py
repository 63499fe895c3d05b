import argparse
import errno
import functools
import os

import pytest
import torch
import torch.distributed as dist

from tool.cli import str2bool
from tool.dist import launch, parse_shard, process_group, shard_ids
from tool.label_io import atomic_path
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


def test_explicit_shard_composes_with_the_workers(monkeypatch):
    ids = [str(i) for i in range(23)]
    for shard in range(3):
        parts = []
        for rank in range(4):
            monkeypatch.setenv("RANK", str(rank))
            monkeypatch.setenv("WORLD_SIZE", "4")
            parts.append(shard_ids(ids, *parse_shard(f"{shard}/3")))
        assert sorted(sum(parts, []), key=int) == ids[shard::3]  # each id of the shard exactly once


def _record_ids(args: argparse.Namespace) -> None:
    """A per-image stage for ``launch``: writes ``<id>.txt`` atomically, once per call (a count)."""

    def process(image_id):
        with atomic_path(args.out / f"{image_id}.txt") as tmp:
            tmp.write_text("x")
        with open(args.out / "calls.log", "a") as log:
            log.write(image_id + "\n")

    run_per_image(args.ids, process, lambda i: [args.out / f"{i}.txt"], desc="t", shard=args.shard, overwrite=True)


def test_shard_with_several_launch_workers_processes_each_image_once(tmp_path):
    """``--shard j/2`` of a ``--gpus 3`` run (gloo CPU workers): the three workers split shard j (with
    ``overwrite``, so that a worker would redo what a sibling did rather than skip it)."""
    ids = [f"i{k}" for k in range(14)]
    for shard in ("0/2", "1/2"):
        args = argparse.Namespace(ids=ids, out=tmp_path, shard=shard)
        assert launch(_record_ids, args, gpus=3, device="cpu") == 0
    calls = (tmp_path / "calls.log").read_text().split()
    assert sorted(calls) == sorted(ids)
    assert sorted(p.stem for p in tmp_path.glob("*.txt") if p.name != "calls.log") == sorted(ids)
    assert not list(tmp_path.glob(".*.tmp"))


def test_str2bool():
    assert str2bool("False") is False and str2bool("True") is True
    assert str2bool("0") is False and str2bool("yes") is True
    with pytest.raises(argparse.ArgumentTypeError):
        str2bool("maybe")
    parser = argparse.ArgumentParser()
    parser.add_argument("--rw", type=str2bool, default=False)
    assert parser.parse_args(["--rw", "False"]).rw is False
    assert parser.parse_args(["--rw", "True"]).rw is True


def test_unwritable_output_folder_fails_before_any_image(tmp_path):
    (tmp_path / "file").write_text("x")
    calls = []
    with pytest.raises(OSError, match="output folder .*file/out: cannot write there"):
        run_per_image(["a", "b"], calls.append, lambda i: [tmp_path / "file" / "out" / f"{i}.png"], desc="t")
    assert calls == []


def test_rerun_removes_stale_temporaries_of_its_outputs(tmp_path, capsys):
    stale = tmp_path / ".a.zzzzzzzz.png.tmp"  # what a kill during atomic_path's write leaves
    other = tmp_path / ".z.zzzzzzzz.png.tmp"  # an output of another run or shard
    stale.write_bytes(b"half")
    other.write_bytes(b"half")

    def process(image_id):
        with atomic_path(tmp_path / f"{image_id}.png") as tmp:
            tmp.write_bytes(b"ok")

    summary = run_per_image(["a", "b"], process, lambda i: [tmp_path / f"{i}.png"], desc="t")
    assert summary.done == 2 and not stale.exists() and other.exists()
    assert str(stale) in capsys.readouterr().err


def test_empty_list_warns_and_fails_unless_allowed(capsys):
    summary = run_per_image([], lambda i: None, lambda i: [], desc="t")
    assert summary.exit_code == 1 and "id list is empty" in capsys.readouterr().err
    assert run_per_image([], lambda i: None, lambda i: [], desc="t", allow_empty=True).exit_code == 0
    # an empty shard of a non-empty list is normal (more shards than images)
    assert run_per_image(["a"], lambda i: None, lambda i: [], desc="t", shard="1/2").exit_code == 0


def test_known_failures_are_reported_without_processing(tmp_path, capsys):
    calls = []
    summary = run_per_image(["a", "b"], calls.append, lambda i: [tmp_path / f"{i}.png"], desc="t",
                            known_failures={"a": "JPEGImages/a.jpg: corrupt"})
    assert calls == ["b"] and summary.failed == [("a", "JPEGImages/a.jpg: corrupt")] and summary.exit_code == 1
    assert "JPEGImages/a.jpg: corrupt" in capsys.readouterr().err


def test_full_disk_stops_the_run_naming_the_path(tmp_path, capsys):
    calls = []

    def process(image_id):
        calls.append(image_id)
        with atomic_path(tmp_path / f"{image_id}.png"):
            raise OSError(errno.ENOSPC, "No space left on device")

    summary = run_per_image(["a", "b", "c"], process, lambda i: [tmp_path / f"{i}.png"], desc="t")
    assert calls == ["a"] and summary.exit_code == 1 and summary.stopped
    err = capsys.readouterr().err
    assert f"no space left on the device while writing {tmp_path / 'a.png'}" in err and "--overwrite" in err


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


def test_process_group_is_destroyed_also_when_the_block_raises(monkeypatch):
    """Under a launcher (WORLD_SIZE > 1) the group lives for the block only, whatever ends it; here a
    one-process gloo group stands in for the launcher's rendezvous."""
    real_init = dist.init_process_group
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(dist, "init_process_group",
                        lambda backend: real_init(backend, store=dist.HashStore(), rank=0, world_size=1))
    with pytest.raises(RuntimeError, match="stage failed"):
        with process_group("cpu") as device:
            assert dist.is_initialized() and device == torch.device("cpu")
            raise RuntimeError("stage failed")
    assert not dist.is_initialized()
    monkeypatch.setenv("WORLD_SIZE", "1")
    with process_group("cpu"):  # one process: nothing to start or destroy
        assert not dist.is_initialized()



def _write_pid(path, fail: bool) -> None:
    """An image's CPU part for the pool: writes the pid of the process it runs in."""
    if fail:
        raise ValueError("CRF failed")
    with atomic_path(path) as tmp:
        tmp.write_text(str(os.getpid()))


@pytest.mark.parametrize("cpu_workers", [0, 2])
def test_cpu_parts_run_in_a_pool_and_failures_are_named(tmp_path, capsys, cpu_workers):
    ids = [f"i{k}" for k in range(7)]
    calls = []

    def process(image_id):
        calls.append(image_id)
        if image_id == "i1":
            raise RuntimeError("device part failed")
        return functools.partial(_write_pid, tmp_path / f"{image_id}.txt", image_id == "i4")

    summary = run_per_image(ids, process, lambda i: [tmp_path / f"{i}.txt"], desc="t", cpu_workers=cpu_workers)
    assert calls == ids and summary.done == 5
    assert sorted(summary.failed) == [("i1", "RuntimeError: device part failed"), ("i4", "ValueError: CRF failed")]
    pids = {int((tmp_path / f"{i}.txt").read_text()) for i in ids if i not in ("i1", "i4")}
    assert (pids == {os.getpid()}) if cpu_workers == 0 else (os.getpid() not in pids and len(pids) <= 2)
    assert "i4: ValueError: CRF failed" in capsys.readouterr().err
    assert run_per_image(ids, process, lambda i: [tmp_path / f"{i}.txt"], desc="t",
                         cpu_workers=cpu_workers).skipped == 5


def _load(image_id: str) -> dict:
    """A stub ``load``: the id's inputs and the process that read them; ``bad`` cannot be read."""
    if image_id == "bad":
        raise OSError(f"cannot identify image file {image_id}.jpg")
    return {"pixels": torch.full((2, 3), float(len(image_id))), "id": image_id, "pid": os.getpid()}


@pytest.mark.parametrize("load_workers", [0, 2])
def test_prefetched_inputs_reach_each_image_once_and_a_load_failure_is_named(tmp_path, capsys, load_workers):
    ids = ["a", "bb", "bad", "known", "done", "eee", "f"]
    (tmp_path / "done.txt").write_text("done before")
    seen = []

    def process(image_id, inputs):
        assert inputs["id"] == image_id and torch.equal(inputs["pixels"], torch.full((2, 3), float(len(image_id))))
        seen.append((image_id, inputs["pid"]))
        (tmp_path / f"{image_id}.txt").write_text(image_id)

    summary = run_per_image(ids, process, lambda i: [tmp_path / f"{i}.txt"], desc="t", load=_load,
                            load_workers=load_workers, known_failures={"known": "known bad"})
    assert [i for i, _ in seen] == ["a", "bb", "eee", "f"]
    pids = {pid for _, pid in seen}
    assert (pids == {os.getpid()}) if load_workers == 0 else (os.getpid() not in pids and len(pids) <= 2)
    assert (summary.done, summary.skipped) == (4, 1)
    assert summary.failed == [("bad", "OSError: cannot identify image file bad.jpg"), ("known", "known bad")]
    assert "FAILED bad: OSError: cannot identify image file bad.jpg" in capsys.readouterr().err
    seen.clear()
    again = run_per_image(ids, process, lambda i: [tmp_path / f"{i}.txt"], desc="t", load=_load,
                          load_workers=load_workers, known_failures={"known": "known bad"})
    assert seen == [] and again.skipped == 5 and [i for i, _ in again.failed] == ["bad", "known"]


@pytest.mark.parametrize("load_workers", [0, 2])
def test_prefetched_batches_get_their_inputs_and_shards_split(tmp_path, load_workers):
    ids = [f"i{k}" for k in range(9)] + ["bad"]
    events = []

    def prepare(batch, inputs):
        assert [x["id"] for x in inputs] == batch
        events.append(("prepare", *batch))

    def process(image_id, inputs):
        events.append(("process", image_id))
        (tmp_path / f"{image_id}.txt").write_text("ok")

    parts = []
    for shard in ("0/2", "1/2"):
        events.clear()
        summary = run_per_image(ids, process, lambda i: [tmp_path / f"{i}.txt"], desc="t", shard=shard,
                                batch_size=3, prepare=prepare, load=_load, load_workers=load_workers)
        parts.append([e[1] for e in events if e[0] == "process"])
        if shard == "0/2":
            assert events[:4] == [("prepare", "i0", "i2", "i4"), ("process", "i0"), ("process", "i2"),
                                  ("process", "i4")]
            assert events[4:] == [("prepare", "i6", "i8"), ("process", "i6"), ("process", "i8")]
            assert summary.failed == []
        else:
            assert [i for i, _ in summary.failed] == ["bad"] and summary.done == 4
    assert sorted(parts[0] + parts[1]) == sorted(ids[:-1])
