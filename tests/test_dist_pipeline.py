"""run_pipeline.py on CUDA without a GPU (device counts monkeypatched, ``launch`` recorded): the training stages go
through ``tool.dist.launch`` on every GPU, one run at a time, with DataLoader workers, and the run says so."""

import os

import pytest
import torch

import run_pipeline


@pytest.fixture
def cuda(monkeypatch):
    """``cuda(gpus, cores)``: pretend that many GPUs and CPU cores; ``launch`` records its calls instead."""
    calls = []

    def fake_launch(main, args, gpus, device):
        calls.append((main.__module__, args, gpus, device))
        return 0

    def setup(gpus, cores=16):
        monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
        return calls

    monkeypatch.setattr(run_pipeline, "launch", fake_launch)
    monkeypatch.setattr(run_pipeline.Pipeline, "_run_processes",
                        staticmethod(lambda *a: pytest.fail("training runs in parallel processes on CUDA")))
    return setup


def pipeline(tmp_path, *flags):
    args = run_pipeline.get_args_parser().parse_args(["--work_dir", str(tmp_path), "--device", "cuda", *flags])
    args.jobs = 3 if args.jobs is None else args.jobs  # main() sets it
    return run_pipeline.Pipeline(args)


def test_training_stages_launch_on_every_gpu_one_run_at_a_time(tmp_path, cuda, capsys):
    calls = cuda(4, cores=16)
    pipe = pipeline(tmp_path, "--quick")
    pipe.aff_train()  # four supervisions, independent runs: one after the other, each on every GPU
    assert [c[0] for c in calls] == ["train_aff_gated_aff"] * 4
    assert all(gpus is None and device == "cuda" and args.num_workers == 4 for _, args, gpus, device in calls)
    assert sorted(args.session_name for _, args, _, _ in calls) == ["aff_box", "aff_image", "aff_point",
                                                                   "aff_scribble"]
    calls.clear()
    pipe.cam_train()
    assert [c[0] for c in calls] == ["train_SEAM"] and calls[0][1].device == "cuda"
    out = capsys.readouterr().out
    assert "$ python train_aff_gated_aff.py" in out and "--gpus" not in out
    line = pipe.devices()
    assert line.startswith("devices: training stages on every visible GPU (4;") and "4 DataLoader workers" in line


def test_gpus_flag_reaches_the_training_scripts(tmp_path, cuda):
    calls = cuda(8)
    pipe = pipeline(tmp_path, "--quick", "--gpus", "2", "--num_workers", "3")
    pipe.cam_train()
    (_, args, gpus, _), = calls
    assert gpus == 2 and args.gpus == 2 and args.num_workers == 3
    assert "training stages on 2 GPUs (--gpus)" in pipe.devices()


def test_default_loader_workers(monkeypatch):
    assert run_pipeline.loader_workers("cpu") == 0  # the CPU plan's timings: augmentation in the loop
    for gpus, cores, expected in [(1, 2, 2), (4, 16, 4), (8, 4, 1), (1, 64, run_pipeline.MAX_LOADER_WORKERS)]:
        monkeypatch.setattr(torch.cuda, "device_count", lambda g=gpus: g)
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, c=cores: set(range(c)))
        assert run_pipeline.loader_workers("cuda") == expected


def test_on_cpu_the_training_stage_runs_in_this_process_through_launch(tmp_path, cuda):
    calls = cuda(0)
    args = run_pipeline.get_args_parser().parse_args(["--work_dir", str(tmp_path), "--device", "cpu", "--quick"])
    args.jobs = 2
    pipe = run_pipeline.Pipeline(args)
    assert pipe.num_workers == 0 and pipe.devices().startswith("devices: training stages in this process on cpu")
    pipe.cam_train()
    assert calls[0][3] == "cpu" and calls[0][2] is None  # launch runs main in-process for one CPU worker
