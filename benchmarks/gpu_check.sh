#!/usr/bin/env bash
# The first checks on a lent GPU machine, in one command, within 8 minutes, one table at the end:
#   1. run_pipeline.py --quick --device cuda           (every stage on the generated CI dataset)
#   2. bench_a2gnn.py --device cuda --batch_images 1,8,32,64 --quick   (A2GNN images/s and memory per batch size)
#   3. infer_image.py on a VOC-size image (500x375, one box), width-1 affinity net with random weights, the
#      published 150 + 150 epochs
#   4. bench_a2gnn.py --check_sync                      (CUDA only: no host synchronisation in A2GNN epochs)
# Each step runs under its own time limit; its output goes to OUT/logs/<step>.log and its seconds and exit
# status to the table. Exit status: 0 when every step passed, 1 when one failed or ran out of time, 2 when
# the device is missing or the options are wrong.
#
#   benchmarks/gpu_check.sh                      # on the GPU machine, from the repository root
#   benchmarks/gpu_check.sh --out /tmp/check     # where logs and outputs go (default: $OUT, else ./gpu_check_out)
#   benchmarks/gpu_check.sh --dry_run            # print the commands and their limits, run nothing
#   benchmarks/gpu_check.sh --device cpu --smoke # the same steps at toy sizes on a CPU: checks the script runs
set -u

device=cuda
smoke=0
dry_run=0
out=${OUT:-./gpu_check_out}
python=${PYTHON:-python}
export PYTHONUNBUFFERED=1  # a step stopped at its limit still leaves every line it printed in its log

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device=${2:?--device needs a value (cuda, cuda:1, cpu)}; shift 2 ;;
        --out) out=${2:?--out needs a folder}; shift 2 ;;
        --smoke) smoke=1; shift ;;
        --dry_run) dry_run=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

cd "$(dirname "$0")/.." || exit 2

if [ "$dry_run" = 0 ] && [ "${device%%:*}" = cuda ]; then
    if ! "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
        echo "error: gpu_check.sh: no CUDA GPU visible to torch (torch.cuda.is_available() is False). Run it on" \
             "the GPU machine, or check the script on a CPU with --device cpu --smoke" >&2
        exit 2
    fi
fi

# sizes: the real check, or toy sizes for --smoke (a CPU check that every step runs)
if [ "$smoke" = 1 ]; then
    pipeline_flags=(--quick --stages data)
    bench_flags=(--batch_images 1 --quick --scale 0.02)
    image_size=64x48; box="8,6,40,36,dog"; width=0.0625; epochs=2
    limits=(300 400 200 60)
else
    pipeline_flags=(--quick)
    bench_flags=(--batch_images 1,8,32,64 --quick)
    image_size=500x375; box="100,80,380,300,dog"; width=1; epochs=150
    limits=(120 240 45 40)  # 445 s at most, within 8 minutes with the setup (H200: 75, ~225, 17, 11 s)
fi

names=(pipeline bench_a2gnn infer_image)
commands=(
    "$python run_pipeline.py ${pipeline_flags[*]} --device $device --work_dir $out/pipeline"
    "$python benchmarks/bench_a2gnn.py --device $device ${bench_flags[*]}"
    "$python infer_image.py --image $out/voc_size.jpg --box $box --weights $out/aff_random.pth --schedule published --epochs $epochs --device $device --out $out/voc_size_mask.png --overlay $out/voc_size_overlay.png"
)
if [ "${device%%:*}" = cuda ]; then  # CUDA's sync debug mode has no CPU counterpart (the CPU test profiles)
    names+=(a2gnn_sync)
    commands+=("$python benchmarks/bench_a2gnn.py --device $device --check_sync")
fi

if [ "$dry_run" = 1 ]; then
    for i in "${!names[@]}"; do
        printf '%s\t%s\t%s\n' "${names[$i]}" "${limits[$i]}" "${commands[$i]}"
    done
    exit 0
fi

mkdir -p "$out/logs" || exit 2
# a VOC-size image with one object, and a random-weight affinity network (no published weights here)
"$python" - "$out" "$image_size" "$width" > "$out/logs/setup.log" 2>&1 <<'EOF' || { echo "error: gpu_check.sh: setup failed, see $out/logs/setup.log" >&2; exit 1; }
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, ".")
from network.resnet38_aff_gated import Net
from tool.checkpoint import save_checkpoint
from tool.label_io import save_image

out, size, width = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
w, h = (int(v) for v in size.split("x"))
rng = np.random.default_rng(0)
image = np.clip(rng.normal(110, 20, (h, w, 3)), 0, 255)
image[h // 5:4 * h // 5, w // 5:3 * w // 4] = (200, 120, 60)  # the object in the box
save_image(out / "voc_size.jpg", image.astype(np.uint8))
torch.manual_seed(0)
save_checkpoint(Net(width=width), out / "aff_random.pth")
EOF

seconds=()
status=()
for i in "${!names[@]}"; do
    echo "== ${names[$i]} (limit ${limits[$i]} s): ${commands[$i]}"
    start=$(date +%s.%N)
    # shellcheck disable=SC2086  # the command is word-split on purpose (no spaces in its parts)
    timeout "${limits[$i]}" ${commands[$i]} > "$out/logs/${names[$i]}.log" 2>&1
    rc=$?
    seconds+=("$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')")
    case $rc in
        0) status+=(ok) ;;
        124) status+=("timeout") ;;
        *) status+=("failed (exit $rc)") ;;
    esac
    tail -n 3 "$out/logs/${names[$i]}.log"
done

echo
echo "== bench_a2gnn table"
grep -A 20 '^device' "$out/logs/bench_a2gnn.log" | grep -v '^$' || echo "(no table: see $out/logs/bench_a2gnn.log)"
echo
device_name=$("$python" -c "import torch; d = torch.device('$device'); print(torch.cuda.get_device_name(d) if d.type == 'cuda' else 'CPU')" 2>/dev/null)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "gpu_check on $device ($device_name), commit $commit$([ "$smoke" = 1 ] && echo ', smoke sizes')"
printf '%-12s %9s  %s\n' step seconds status
printf '%-12s %9s  %s\n' ------------ --------- ------
failed=0
for i in "${!names[@]}"; do
    printf '%-12s %9.1f  %s\n' "${names[$i]}" "${seconds[$i]}" "${status[$i]}"
    [ "${status[$i]}" = ok ] || failed=1
done
echo "logs: $out/logs/"
exit $failed
