"""benchmarks/gpu_check.sh, the prepared script for a lent GPU machine, checked on a CPU: its commands parse
with the scripts' own parsers, it refuses cleanly without a GPU, and (slow) its steps run at toy sizes."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import infer_image
import run_pipeline

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def run_script(*flags, env=None, timeout=60):
    return subprocess.run(["bash", str(SCRIPT), *flags], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHON": sys.executable, **(env or {})})


def test_dry_run_commands_parse_and_fit_in_eight_minutes(tmp_path):
    done = run_script("--dry_run", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    steps = [line.split("\t") for line in done.stdout.splitlines()]
    assert [name for name, _, _ in steps] == ["pipeline", "bench_a2gnn", "infer_image", "a2gnn_sync"]
    assert sum(int(limit) for _, limit, _ in steps) <= 8 * 60 - 15  # the setup (image, checkpoint) fits too
    parsers = {"run_pipeline.py": run_pipeline.get_args_parser(), "infer_image.py": infer_image.get_args_parser()}
    for _, _, command in steps:
        argv = shlex.split(command)
        assert argv[0] == sys.executable and "--device" in argv and argv[argv.index("--device") + 1] == "cuda"
        if argv[1] in parsers:
            parsers[argv[1]].parse_args(argv[2:])  # exits (SystemExit) on a flag the script does not take
    bench = shlex.split(steps[1][2])
    assert bench[bench.index("--batch_images") + 1] == "1,8,32,64"
    assert "--check_sync" in shlex.split(steps[3][2])


def test_without_a_gpu_it_says_so_and_exits_2(tmp_path):
    done = run_script("--out", str(tmp_path), env={"CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 2
    assert "no CUDA GPU visible" in done.stderr and "--device cpu --smoke" in done.stderr
    assert not (tmp_path / "logs").exists()  # nothing ran
    assert run_script("--no_such_flag").returncode == 2


@pytest.mark.slow
def test_smoke_run_on_cpu_prints_the_table(tmp_path):
    done = run_script("--device", "cpu", "--smoke", "--out", str(tmp_path), timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = done.stdout[done.stdout.index("gpu_check on cpu"):]
    for step in ("pipeline", "bench_a2gnn", "infer_image"):
        assert any(line.startswith(step) and line.endswith("ok") for line in table.splitlines()), table
    assert "images/s" in done.stdout  # the bench_a2gnn table is shown
    assert (tmp_path / "voc_size_mask.png").is_file()
