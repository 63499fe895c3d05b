"""tool.dist on a machine without GPUs: the worker count chosen in the parent, ``launch`` watching its workers
(gloo CPU workers stand in for GPUs), and frozen BatchNorm staying frozen under SyncBatchNorm."""

import argparse
import multiprocessing
import time

import dist_workers
import pytest
import torch
from torch import nn

import train_aff_gated_aff
import train_SEAM
import train_seg
from network.deeplab import build_seg_net
from tool import cli
from tool.cli import UserError
from tool.dist import launch, worker_count
from tool.segmentation import recipe


def test_frozen_batchnorm_stays_frozen_under_syncbatchnorm():
    """train_seg.py converts BatchNorm to SyncBatchNorm on several GPUs; ResNet-38's frozen BatchNorms must
    still normalise with their running statistics, which a training step leaves unchanged."""
    torch.manual_seed(0)
    net = build_seg_net("deeplabv2_resnet38", 21, width=1 / 16)
    with torch.no_grad():  # non-trivial running statistics
        for bn in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
    reference = build_seg_net("deeplabv2_resnet38", 21, width=1 / 16)
    reference.load_state_dict(net.state_dict())
    net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    syncs = [m for m in net.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert len(syncs) == 37 and not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    net.train()
    reference.train()
    assert net.training and not any(m.training for m in syncs)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(2, 3, 40, 40)
    torch.manual_seed(1)  # the same dropout masks in both
    out = net(x)  # eval-mode SyncBatchNorm: running statistics, no process group needed
    torch.manual_seed(1)
    assert torch.allclose(out, reference(x), atol=1e-5)  # the same function as the frozen BatchNorm net
    optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    out.square().mean().backward()
    optimizer.step()
    after = net.state_dict()
    norms = [k for k in before if k.rsplit(".", 1)[0] in {n for n, m in net.named_modules() if m in syncs}]
    assert len(norms) == 37 * 5
    assert all(torch.equal(before[k], after[k]) for k in norms)  # weight, bias, running stats, counter
    assert not all(torch.equal(before[k], after[k]) for k in before)  # the step changed the rest


# --- the worker count, chosen in the parent before any worker starts ------------------------------------------


@pytest.fixture
def gpus(monkeypatch):
    """``gpus(n)``: pretend ``n`` GPUs are visible, outside torchrun."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    return lambda n: monkeypatch.setattr(torch.cuda, "device_count", lambda: n)


@pytest.mark.parametrize("script", [train_seg, train_aff_gated_aff, train_SEAM])
def test_default_worker_count_divides_each_training_scripts_default_batch(script, gpus, capsys):
    """The issue's crashes: batch 10 on 4 and 8 GPUs, 4 on 3 and 5-8, 8 on 3, 5, 6, 7. The default is now the
    most visible GPUs that share the global batch evenly (a reference: the largest such divisor)."""
    actions = {a.dest: a.default for a in script.get_args_parser()._actions}
    batch = actions["batch_size"] or recipe(actions["arch"]).batch_size  # train_seg: its --arch's recipe
    for visible in range(1, 9):
        gpus(visible)
        count = worker_count(None, "cuda", batch)
        assert count == max(k for k in range(1, visible + 1) if batch % k == 0)
        assert batch % count == 0 and 1 <= count <= visible
        said = capsys.readouterr().out
        assert (f"{visible} GPUs visible, but --batch_size {batch}" in said) == (count < visible)


def test_worker_count_refuses_a_batch_the_workers_cannot_share(gpus, monkeypatch):
    gpus(8)
    assert worker_count(None, "cuda", 10) == 5 and worker_count(None, "cuda") == 8  # per-image stage: every GPU
    assert worker_count(None, "cuda:3", 10) == 1 and worker_count(None, "cpu", 10) == 1
    assert worker_count(2, "cuda", 10) == 2 and worker_count(3, "cpu") == 3
    with pytest.raises(UserError, match=r"--gpus 4: --batch_size 10 \(the global batch\) does not divide"):
        worker_count(4, "cuda", 10)
    with pytest.raises(UserError, match=r"--gpus 3: --batch_size 4"):
        worker_count(3, "cpu", 4)  # gloo stand-in workers: the same rule
    with pytest.raises(UserError, match="only 8 GPU"):
        worker_count(9, "cuda")
    with pytest.raises(UserError, match="at least 1"):
        worker_count(0, "cuda")
    with pytest.raises(UserError, match=r"--device cuda:8: 8 CUDA GPU\(s\) visible"):
        worker_count(None, "cuda:8")
    gpus(0)
    with pytest.raises(UserError, match=r"--device cuda: 0 CUDA GPU\(s\) visible .* or pass --device cpu"):
        worker_count(None, "cuda", 10)
    monkeypatch.setenv("WORLD_SIZE", "4")  # under torchrun: this process is one worker already
    assert worker_count(None, "cuda", 8) == 1 and worker_count(None, "cuda") == 1
    with pytest.raises(UserError, match=r"does not divide over torchrun's 4 processes"):
        worker_count(None, "cuda", 10)


def test_launch_refuses_before_starting_a_worker(gpus, monkeypatch):
    """An explicit ``--gpus`` that does not divide the batch: refused before any process starts or any file
    is read (``main`` never runs)."""
    gpus(4)
    monkeypatch.setattr(multiprocessing, "get_context", lambda *a: pytest.fail("a worker was started"))
    args = argparse.Namespace(batch_size=10, gpus=4, device="cuda")
    with pytest.raises(UserError, match="--gpus 4"):
        launch(lambda a: pytest.fail("main ran"), args, args.gpus, args.device)


# --- launch watches its workers (spawned gloo CPU workers, tests/dist_workers.py, stand in for GPUs) ---------


def _launch_two(main, out, **extra):
    args = argparse.Namespace(out=out, gpus=2, device="cpu", **extra)
    return launch(main, args, args.gpus, args.device)


def test_a_failing_worker_stops_its_siblings_within_seconds(tmp_path, capfd):
    code = _launch_two(dist_workers.rank1_fails_while_rank0_waits_in_all_reduce, tmp_path,
                       error=RuntimeError("CUDA out of memory (stand-in)"))
    after = time.time() - float((tmp_path / "failed_at").read_text())
    assert code == 1 and after < 20  # rank 0 would have slept for 10 minutes
    err = capfd.readouterr().err
    assert "error: worker 1 of 2 failed: RuntimeError: CUDA out of memory (stand-in); stopped the other" in err
    assert "Traceback" in err  # the worker's own traceback is kept on stderr, above the summary line


def test_a_workers_user_error_is_one_error_line_naming_its_rank(tmp_path, capfd):
    """Under ``cli.run`` (every script's entry point): one ``error: …`` line and status 2, no traceback."""
    status = cli.run(lambda: _launch_two(dist_workers.rank1_fails_while_rank0_waits_in_all_reduce, tmp_path,
                                         error=UserError("--weights w.pth: not found")))
    assert status == 2 and time.time() - float((tmp_path / "failed_at").read_text()) < 20
    err = capfd.readouterr().err
    assert err.strip().splitlines() == ["error: worker 1 of 2: --weights w.pth: not found"]


def test_a_worker_that_ends_with_failures_does_not_stop_the_others(tmp_path):
    assert _launch_two(dist_workers.rank1_returns_failures_early, tmp_path) == 1
    assert (tmp_path / "rank0_done").read_text() == "yes"
