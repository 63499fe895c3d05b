"""Stage-2 training: DDP step equivalence, a short CPU run on a generated VOC root, resume, torchrun."""

import functools
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from killed_run import killed_after_epoch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import train_aff_gated_aff as stage2
from network.resnet38_aff_gated import Net
from tool import trainer
from tool.checkpoint import load_checkpoint
from tool.dist import launch
from tool.label_io import save_image, save_label_png
from tool.optim import PolyOptimizer

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 0.125
RADIUS = 2


def tiny_net(seed=0):
    torch.manual_seed(seed)
    net = Net(width=WIDTH)
    for m in net.modules():
        if isinstance(m, nn.Dropout | nn.Dropout2d):
            m.p = 0.0
    return net.train()


def fixed_batch(n=4, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, 3, (n, size // 8, size // 8), generator=g)
    label = label.repeat_interleave(8, 1).repeat_interleave(8, 2)
    label[torch.rand(label.shape, generator=g) < 0.1] = 255
    valid = torch.ones(n, size, size)
    valid[1, :, size // 2:] = 0
    label[valid == 0] = 255
    return {"image": torch.randn(n, 3, size, size, generator=g), "label": label, "valid": valid}


def one_step(model, batch):
    optimizer = PolyOptimizer(model.module.get_parameter_groups() if hasattr(model, "module")
                              else model.get_parameter_groups(), lr=0.05, weight_decay=5e-4, max_step=10,
                              momentum=0.9)
    objective = functools.partial(stage2.affinity_objective, radius=RADIUS)
    return trainer.train_step(model, optimizer, batch, objective, epoch=0)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, batch, results):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = DistributedDataParallel(tiny_net(seed=rank), broadcast_buffers=False)  # rank 0's init wins
        terms = one_step(model, {k: v[rank::world] for k, v in batch.items()})
        results[rank] = (terms, {k: v.detach().clone() for k, v in model.module.state_dict().items()})
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_step_equals_one_process_step():
    batch = fixed_batch()
    initial = tiny_net().state_dict()
    initial = {k: v.clone() for k, v in initial.items()}
    single = tiny_net()
    terms = one_step(single, batch)

    results = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(2, _free_port(), batch, results), nprocs=2, join=True)
    changed = 0
    for rank in range(2):
        rank_terms, state = results[rank]
        for key, value in terms.items():
            assert rank_terms[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
        for key, value in single.state_dict().items():
            torch.testing.assert_close(state[key], value, rtol=1e-5, atol=1e-6, msg=key)
            changed += int(not torch.equal(value, initial[key]))
    assert changed > 20  # the step moved many tensors: the comparison is not vacuous


def make_voc_root(root: Path, count=8, size=(72, 88), seed=0):
    """JPEGImages/<id>.jpg (a coloured rectangle on a noisy background), seeds/<id>.png, list.txt."""
    rng = np.random.default_rng(seed)
    ids = [f"2000_{i:06d}" for i in range(count)]
    h, w = size
    for image_id in ids:
        y0, x0 = rng.integers(4, h // 2), rng.integers(4, w // 2)
        y1, x1 = y0 + rng.integers(16, h // 2), x0 + rng.integers(16, w // 2)
        cls = int(rng.integers(1, 21))
        image = rng.integers(0, 60, (h, w, 3)).astype(np.uint8)
        image[y0:y1, x0:x1] = np.clip(rng.integers(0, 40, 3) + np.array([200, 60 + 8 * cls, 90]), 0, 255)
        seeds = np.zeros((h, w), np.uint8)
        seeds[y0:y1, x0:x1] = cls
        seeds[y0 - 2:y0 + 2, x0:x1] = 255  # an unsure band along the top edge
        save_image(root / "JPEGImages" / f"{image_id}.jpg", image)
        save_label_png(root / "seeds" / f"{image_id}.png", seeds)
    (root / "list.txt").write_text("".join(f"{i}\n" for i in ids))
    return ids


def stage2_args(root: Path, out: Path, **overrides):
    argv = ["--voc12_root", str(root), "--label_dir", str(root / "seeds"),
            "--train_list", str(root / "list.txt"),
            "--weights", "none", "--backbone_width", str(WIDTH), "--crop_size", "64", "--radius", str(RADIUS),
            "--batch_size", "4", "--num_workers", "0", "--device", "cpu", "--save_dir", str(out),
            "--session_name", "aff_test", "--seed", "1"]
    for key, value in overrides.items():
        argv += [f"--{key}", str(value)]
    return stage2.get_args_parser().parse_args(argv)


def test_parser_keeps_upstream_defaults():
    args = stage2.get_args_parser().parse_args(["--voc12_root", "VOC2012"])
    assert (args.batch_size, args.max_epoches, args.lr) == (4, 12, 0.01)
    assert (args.wt_dec, args.crop_size, args.radius) == (5e-4, 448, 4)
    assert args.network == "network.resnet38_aff_gated" and args.train_list == "train_aug.txt"
    assert args.momentum == 5e-4 and args.resume is False


def test_init_weights_strict_for_full_files_subset_for_backbone_files(tmp_path, capsys):
    source = tiny_net(seed=3).state_dict()
    torch.save(source, tmp_path / "full.pth")
    target = tiny_net(seed=4)
    stage2.init_weights(target, str(tmp_path / "full.pth"))
    for key, value in source.items():
        assert torch.equal(target.state_dict()[key], value), key
    backbone = {k: v for k, v in source.items() if not k.startswith(("f8_", "f9"))}
    torch.save({**backbone, "fc8.weight": torch.zeros(21, 4, 1, 1)}, tmp_path / "seam.pth")
    fresh = tiny_net(seed=5)
    stage2.init_weights(fresh, str(tmp_path / "seam.pth"))
    assert f"matched {len(backbone)}, missing 4, unexpected 1" in capsys.readouterr().out
    assert torch.equal(fresh.state_dict()["b7.conv_branch1.weight"], source["b7.conv_branch1.weight"])
    torch.save({**source, "fc8.weight": torch.zeros(21, 4, 1, 1)}, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match="strict"):
        stage2.init_weights(tiny_net(), str(tmp_path / "extra.pth"))
    with pytest.raises(FileNotFoundError, match="--weights"):
        stage2.init_weights(tiny_net(), str(tmp_path / "absent.pth"))


@pytest.mark.slow
def test_short_run_lowers_loss_and_saves_strict_checkpoint(tmp_path):
    make_voc_root(tmp_path / "voc")
    history = stage2.main(stage2_args(tmp_path / "voc", tmp_path / "out", max_epoches=6, lr=0.02,
                                      momentum=0.9))
    assert len(history) == 6 * 2
    losses = [h["loss"] for h in history]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])
    report = load_checkpoint(Net(width=WIDTH), tmp_path / "out" / "aff_test.pth", strict=True)
    assert not report.missing and not report.unexpected
    saved = torch.load(tmp_path / "out" / "aff_test.pth", weights_only=True)
    assert not any(k.startswith("module.") for k in saved)


@pytest.mark.slow
def test_resume_reproduces_uninterrupted_run(tmp_path):
    make_voc_root(tmp_path / "voc", count=4)
    full = stage2.main(stage2_args(tmp_path / "voc", tmp_path / "full", max_epoches=3))
    reference = torch.load(tmp_path / "full" / "aff_test.pth", weights_only=True)
    with killed_after_epoch(2):
        stage2.main(stage2_args(tmp_path / "voc", tmp_path / "cut", max_epoches=3))
    rest = stage2.main(stage2_args(tmp_path / "voc", tmp_path / "cut", max_epoches=3, resume=True))
    assert len(rest) == 1
    assert rest[0]["loss"] == pytest.approx(full[-1]["loss"], rel=1e-6)
    resumed = torch.load(tmp_path / "cut" / "aff_test.pth", weights_only=True)
    for key, value in reference.items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=0, msg=key)


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    make_voc_root(tmp_path / "voc", count=8)  # two steps, so DDP runs past its first iteration
    args = stage2_args(tmp_path / "voc", tmp_path / "out", max_epoches=1)
    argv = [a for k, v in vars(args).items() if v is not None  # None: the flag's default (e.g. --gpus)
            for a in ([f"--{k}", *map(str, v)] if isinstance(v, (list, tuple)) else [f"--{k}={v}"])]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port",
           str(_free_port()), str(ROOT / "train_aff_gated_aff.py"), *argv]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es) x 2 images/step" in done.stdout
    load_checkpoint(Net(width=WIDTH), tmp_path / "out" / "aff_test.pth", strict=True)
    assert (tmp_path / "out" / "aff_test_state.pth").is_file()


def main_rank_independent_draws(args):
    """``stage2.main`` with each item's augmentation drawn from one fixed generator and dropout off. Both
    normally come from torch's generator, which the loop seeds by rank (``tool/trainer.py``), so only with
    them pinned do K workers and one process see the same crops; what is left to compare is the split of
    the global batch and DistributedDataParallel's averaging."""
    import voc12.data

    item_rng, build_model = voc12.data.item_rng, stage2.build_model

    def without_dropout(network, width):
        net = build_model(network, width)
        for m in net.modules():
            if isinstance(m, nn.Dropout | nn.Dropout2d):
                m.p = 0.0
        return net

    voc12.data.item_rng = lambda: np.random.default_rng(0)
    stage2.build_model = without_dropout
    try:
        return stage2.main(args)
    finally:
        voc12.data.item_rng, stage2.build_model = item_rng, build_model


def test_two_cpu_workers_train_the_weights_of_one_process(tmp_path, capfd):
    """``--gpus 2 --device cpu`` through ``launch`` (the path of a plain ``python`` run on two GPUs): two
    gloo workers with 2 images each end two steps with the weights one process reaches on the batch of 4."""
    make_voc_root(tmp_path / "voc", count=8)  # two steps: DDP runs past its first iteration
    weights = {}
    for gpus in (1, 2):
        args = stage2_args(tmp_path / "voc", tmp_path / f"gpus{gpus}", max_epoches=1, momentum=0.9, gpus=gpus)
        assert launch(main_rank_independent_draws, args, args.gpus, args.device) == 0
        weights[gpus] = torch.load(tmp_path / f"gpus{gpus}" / "aff_test.pth", weights_only=True)
    out = capfd.readouterr().out
    assert "starting 2 worker processes" in out and "2 process(es) x 2 images/step" in out
    initial = tiny_net(seed=1).state_dict()  # --seed 1, --weights none: the initial weights of both runs
    moved = 0
    for key, value in weights[1].items():
        torch.testing.assert_close(weights[2][key], value, rtol=1e-5, atol=1e-6, msg=key)
        moved += int(not torch.equal(value, initial[key]))
    assert moved > 20  # the steps changed many tensors: the comparison is not vacuous


def test_resume_with_a_changed_radius_is_refused(tmp_path):
    make_voc_root(tmp_path / "voc", count=4)
    stage2.main(stage2_args(tmp_path / "voc", tmp_path / "out", max_epoches=1))
    with pytest.raises(ValueError, match=f"--radius was {RADIUS}, now {RADIUS + 1}"):
        stage2.main(stage2_args(tmp_path / "voc", tmp_path / "out", max_epoches=1, radius=RADIUS + 1,
                                resume=True))
    records = (tmp_path / "out" / "aff_test_log.jsonl").read_text().splitlines()
    assert '"event": "start"' in records[0] and '"loss"' in records[-1]
