"""The shared training loop: resume equality, settings refused on resume, the JSON-lines log, optimizers."""

import argparse
import json
import sys

import pytest
import torch
from killed_run import killed_after_epoch
from torch import nn
from torch.utils.data import Dataset

import train_aff_gated_aff
import train_SEAM
from tool import cli, trainer
from tool.optim import PolyAdamW, PolyOptimizer


class NoisyPoints(Dataset):
    """Random regression items; the noise is drawn from torch's default generator, like the augmentation."""

    def __init__(self, n=12):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        x = self.x[i] + 0.1 * torch.randn(3)
        return {"id": str(i), "x": x, "y": x.sum(0, keepdim=True)}


class Linear(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body, self.head = nn.Linear(3, 4), nn.Linear(4, 1)

    def forward(self, x):
        return self.head(torch.relu(self.body(x)))

    def get_parameter_groups(self):
        return ([self.body.weight], [self.body.bias], [self.head.weight], [self.head.bias])


def objective(model, batch, epoch):
    err = (model(batch["x"]) - batch["y"]).pow(2).mean()
    return err, {"loss": err, "abs": (model(batch["x"]) - batch["y"]).abs().mean()}


def loop_args(save_dir, **overrides):
    values = dict(batch_size=4, max_epoches=3, lr=0.05, wt_dec=1e-4, momentum=0.9, optimizer="sgd", seed=3,
                  num_workers=0, save_dir=str(save_dir), session_name="toy", resume=False, log_every=2, radius=4)
    values.update(overrides)
    return argparse.Namespace(**values)


SETTINGS = ("batch_size", "max_epoches", "lr", "optimizer", "seed", "radius")


def run(save_dir, **overrides):
    return trainer.train(Linear(), objective, NoisyPoints(), loop_args(save_dir, **overrides), torch.device("cpu"),
                         SETTINGS)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_killed_and_resumed_run_equals_uninterrupted_run(tmp_path, optimizer):
    full = run(tmp_path / "full", optimizer=optimizer)
    assert len(full.steps) == 9 and len(full.epochs) == 3
    with killed_after_epoch(1):
        run(tmp_path / "cut", optimizer=optimizer)
    rest = run(tmp_path / "cut", optimizer=optimizer, resume=True)
    assert rest.steps == full.steps[3:]
    reference = torch.load(tmp_path / "full" / "toy.pth", weights_only=True)
    resumed = torch.load(tmp_path / "cut" / "toy.pth", weights_only=True)
    assert set(reference) == set(resumed)
    for key, value in reference.items():
        assert torch.equal(resumed[key], value), key
    # the log of the resumed run is the uninterrupted run's curve (timings aside) after its start records
    def curve(path):
        return [{k: v for k, v in r.items() if k != "seconds_per_step"}
                for r in map(json.loads, path.read_text().splitlines()) if "event" not in r]
    assert curve(tmp_path / "cut" / "toy_log.jsonl") == curve(tmp_path / "full" / "toy_log.jsonl")


def test_state_holds_arguments_and_settings_and_a_changed_setting_is_refused(tmp_path):
    run(tmp_path, max_epoches=1)
    state = torch.load(tmp_path / "toy_state.pth", weights_only=True)
    assert state["epoch"] == 1 and state["step"] == 3
    assert state["args"]["session_name"] == "toy" and state["args"]["log_every"] == 2
    assert state["settings"] == {"batch_size": 4, "max_epoches": 1, "lr": 0.05, "optimizer": "sgd", "seed": 3,
                                 "radius": 4, "processes": 1}
    with pytest.raises(ValueError, match=r"--radius was 4, now 3") as err:
        run(tmp_path, max_epoches=1, radius=3, resume=True)
    assert str(tmp_path / "toy_state.pth") in str(err.value)
    with pytest.raises(ValueError, match=r"--lr was 0.05, now 0.1.*--optimizer was 'sgd', now 'adamw'"):
        run(tmp_path, max_epoches=1, lr=0.1, optimizer="adamw", resume=True)
    run(tmp_path, max_epoches=1, resume=True)  # same settings: nothing left to do, accepted
    with pytest.raises(FileNotFoundError, match="--resume True: training state not found"):
        run(tmp_path / "elsewhere", resume=True)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "toy_state.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable training state"):
        run(tmp_path / "junk", resume=True)


def test_log_records_interval_means_lr_and_epoch_ends(tmp_path):
    result = run(tmp_path)  # 3 steps per epoch, log every 2 steps and at every epoch end
    records = [json.loads(line) for line in (tmp_path / "toy_log.jsonl").read_text().splitlines()]
    assert records[0]["event"] == "start" and records[0]["args"]["batch_size"] == 4
    rows = records[1:]
    assert [r["step"] for r in rows] == [2, 3, 4, 6, 8, 9]
    assert [r["epoch"] for r in rows] == [1, 1, 2, 2, 3, 3]
    bounds = [0, 2, 3, 4, 6, 8, 9]
    for row, lo, hi in zip(rows, bounds[:-1], bounds[1:], strict=True):
        steps = result.steps[lo:hi]
        assert row["loss"] == pytest.approx(sum(s["loss"] for s in steps) / len(steps), rel=1e-12)
        assert row["seconds_per_step"] >= 0
        assert row["lr"] == pytest.approx(0.05 * (1 - (hi - 1) / 9) ** 0.9)


def test_max_steps_ends_inside_an_epoch(tmp_path):
    result = trainer.train(Linear(), objective, NoisyPoints(), loop_args(tmp_path), torch.device("cpu"),
                           SETTINGS, max_steps=5)
    assert len(result.steps) == 5 and len(result.epochs) == 2
    assert torch.load(tmp_path / "toy_state.pth", weights_only=True)["step"] == 5


def test_optimizer_flag_builds_sgd_or_adamw(tmp_path, monkeypatch):
    built = []
    original = trainer.build_optimizer

    def spy(name, *args, **kwargs):
        built.append(original(name, *args, **kwargs))
        return built[-1]

    monkeypatch.setattr(trainer, "build_optimizer", spy)
    run(tmp_path / "a", max_epoches=1)
    run(tmp_path / "b", max_epoches=1, optimizer="adamw")
    assert type(built[0]) is PolyOptimizer and type(built[1]) is PolyAdamW


@pytest.mark.parametrize("script", [train_SEAM, train_aff_gated_aff])
def test_training_scripts_share_resume_optimizer_and_log_flags(script):
    parser = script.get_args_parser()
    root = ["--voc12_root", "VOC2012"]  # required in every script that reads the dataset
    assert parser.parse_args(root).resume is False and parser.parse_args(root).optimizer == "sgd"
    assert parser.parse_args([*root, "--resume", "True", "--optimizer", "adamw"]).resume is True
    assert parser.parse_args([*root, "--resume", "False"]).resume is False
    with pytest.raises(SystemExit):
        parser.parse_args([*root, "--resume", "some/state.pth"])
    assert set(script.SETTINGS) <= set(vars(parser.parse_args(root)))


def test_amp_needs_cuda(tmp_path):
    with pytest.raises(ValueError, match="--amp True needs a CUDA device"):
        trainer.train(Linear(), objective, NoisyPoints(), loop_args(tmp_path), torch.device("cpu"), SETTINGS,
                      amp=True)


def tensorboard_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a TensorBoard log folder, read back with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0}).Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def jsonl_scalars(path) -> dict[str, list[tuple[int, float]]]:
    """The same view of the JSON-lines log: per key, (step, value) of every record."""
    out: dict[str, list[tuple[int, float]]] = {}
    for record in map(json.loads, path.read_text().splitlines()):
        if "event" not in record:
            for key, value in record.items():
                if key != "step":
                    out.setdefault(key, []).append((record["step"], value))
    return out


def assert_same_scalars(tensorboard, jsonl, skip=()):
    assert set(tensorboard) == set(jsonl)
    for key in set(jsonl) - set(skip):
        assert [s for s, _ in tensorboard[key]] == [s for s, _ in jsonl[key]], key
        assert torch.allclose(torch.tensor([v for _, v in tensorboard[key]], dtype=torch.float64),
                              torch.tensor([v for _, v in jsonl[key]], dtype=torch.float64), rtol=1e-6), key


def test_tensorboard_holds_the_scalars_of_the_jsonl_log_also_after_a_resume(tmp_path):
    run(tmp_path / "full", tensorboard=str(tmp_path / "full_tb"))
    full = jsonl_scalars(tmp_path / "full" / "toy_log.jsonl")
    assert {"loss", "abs", "lr", "epoch", "seconds_per_step"} <= set(full) and len(full["loss"]) >= 3
    assert_same_scalars(tensorboard_scalars(tmp_path / "full_tb"), full)
    # killed during epoch 2 (its events written, its state not) and resumed into the same folder: the events
    # after the resumed step are purged, so the folder holds the curve of the uninterrupted run
    cut, tb = tmp_path / "cut", str(tmp_path / "cut_tb")
    with killed_after_epoch(1):
        run(cut, tensorboard=tb)
    epoch_1_state = (cut / "toy_state.pth").read_bytes()
    with killed_after_epoch(2):
        run(cut, tensorboard=tb, resume=True)
    (cut / "toy_state.pth").write_bytes(epoch_1_state)  # as if killed before epoch 2's state was saved
    run(cut, tensorboard=tb, resume=True)
    assert_same_scalars(tensorboard_scalars(tb), full, skip=("seconds_per_step",))


def test_a_run_that_raises_still_closes_its_tensorboard_writer(tmp_path, monkeypatch):
    """Steps 1-4 logged, step 5 raises: the writer is closed (its queue written, the file released) on the
    way out, and the events file holds the 4 records of the JSON-lines log."""
    from torch.utils.tensorboard import SummaryWriter

    closed, real_close = [], SummaryWriter.close
    monkeypatch.setattr(SummaryWriter, "close", lambda self: closed.append(self) or real_close(self))
    calls = []

    def failing(model, batch, epoch):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("CUDA out of memory")
        return objective(model, batch, epoch)

    with pytest.raises(RuntimeError, match="out of memory"):
        trainer.train(Linear(), failing, NoisyPoints(), loop_args(tmp_path, log_every=1,
                      tensorboard=str(tmp_path / "tb")), torch.device("cpu"), SETTINGS)
    assert len(closed) == 1
    jsonl = jsonl_scalars(tmp_path / "toy_log.jsonl")
    assert [s for s, _ in jsonl["loss"]] == [1, 2, 3, 4]
    assert_same_scalars(tensorboard_scalars(tmp_path / "tb"), jsonl)


def test_tensorboard_without_the_package_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with pytest.raises(cli.UserError, match="--tensorboard needs the tensorboard package: pip install"):
        run(tmp_path, tensorboard=str(tmp_path / "tb"))
    assert not (tmp_path / "toy.pth").exists()


def test_loop_reads_the_loss_terms_back_once_per_record_not_per_step(tmp_path, monkeypatch):
    """Reading a CUDA tensor on the host waits for the device: the loop keeps the terms on the device and
    reads them at each log record and epoch end (3 reads for 10 steps here), never with ``.item()``."""
    reads = {"tolist": 0, "item": 0}
    for name in reads:
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _name=name, _original=original, **k):
            reads[_name] += self.is_floating_point()  # not the sampler's permutation or the loader's seed
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)
    result = trainer.train(Linear(), objective, NoisyPoints(40), loop_args(tmp_path, max_epoches=1, log_every=5),
                           torch.device("cpu"), SETTINGS)
    assert len(result.steps) == 10 and reads == {"tolist": 3, "item": 0}  # records at steps 5, 10; the epoch
    rows = [json.loads(line) for line in (tmp_path / "toy_log.jsonl").read_text().splitlines()][1:]
    assert [r["step"] for r in rows] == [5, 10]
    assert rows[1]["abs"] == pytest.approx(sum(s["abs"] for s in result.steps[5:]) / 5, rel=1e-12)


def test_cudnn_autotuner_on_cuda_only_and_for_the_training_only(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    with trainer.cudnn_autotuner(torch.device("cpu")):
        assert torch.backends.cudnn.benchmark is False
    with trainer.cudnn_autotuner(torch.device("cuda", 1)):  # sets a flag only: no GPU needed
        assert torch.backends.cudnn.benchmark is True
    assert torch.backends.cudnn.benchmark is False  # per-image stages after it in the same process: off again
    with pytest.raises(RuntimeError), trainer.cudnn_autotuner(torch.device("cuda")):
        raise RuntimeError("a failed run")
    assert torch.backends.cudnn.benchmark is False


def test_loader_refuses_a_batch_the_processes_cannot_share(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")  # torchrun's processes; launch refuses this before starting workers
    with pytest.raises(cli.UserError, match=r"--batch_size 4 \(global\) must be divisible by the 3 processes"):
        trainer.make_loader(NoisyPoints(), loop_args(tmp_path), torch.device("cpu"))
