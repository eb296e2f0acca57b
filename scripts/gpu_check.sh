#!/usr/bin/env bash
# The GPU paths, measured in one go (< 10 minutes on one H100/H200-class GPU):
#   1. the GPU-marked tests (pytest -m gpu: FAISS GPU search = CPU search, nvJPEG decode = CPU decode),
#   2. scripts/bench_embed.py on CUDA with JPEG decoding on the GPU (embed.gpu_jpeg), released model,
#      target >= 5,000 images/s from JPEG files on disk to vectors,
#   3. scripts/bench_index.py --gpu with faiss-gpu at 10^6 and 10^7 vectors, batches of 1,000 queries,
#      target <= 1 ms per query at recall@10 >= 0.95 at 10^7.
# Figures go to $OUT (default gpu_check_out/) as JSON and logs; paste them into docs/benchmarks.md with
# the device name that step 0 records.
#
#   scripts/gpu_check.sh                 # on the GPU machine
#   scripts/gpu_check.sh --dry-run       # the same steps, tiny and on the CPU (tests/test_gpu_check.py runs it)
#
# PYTHON picks the interpreter (default .venv/bin/python, else python3). Data: the shared JPEGs when
# CXR_SHARED_DATA (or ../shared/data) has them, else generated 512 px JPEGs.
set -euo pipefail

DRY=0
OUT=gpu_check_out
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --out) OUT="$2"; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
START=$(date +%s)
step() { echo "== $1 ($(( $(date +%s) - START )) s)"; }

step "0. device"
if [ "$DRY" = 1 ]; then
    echo "dry run: CPU only" | tee "$OUT/device.txt"
else
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/device.txt"
    "$PY" - <<'EOF' | tee -a "$OUT/device.txt"
import torch, faiss
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
print("faiss", faiss.__version__, "gpus", faiss.get_num_gpus())
EOF
fi

step "1. GPU-marked tests"
# Without a GPU they skip, with one they must pass; exit code 5 (none collected) is not a failure.
GPU_TESTS=tests
[ "$DRY" = 1 ] && GPU_TESTS="tests/embed/test_gpu_jpeg.py tests/index/test_faiss_index.py"  # quicker collection
# shellcheck disable=SC2086
timeout 120 "$PY" -m pytest -q -m gpu $GPU_TESTS -p no:cacheprovider 2>&1 | tee "$OUT/pytest_gpu.log" || {
    rc=${PIPESTATUS[0]}; [ "$rc" = 5 ] || { echo "GPU tests failed (exit $rc)"; exit "$rc"; }; }

step "2. embedding throughput on the GPU (JPEG decode on the GPU)"
DATA="${CXR_SHARED_DATA:-../shared/data}"
if [ "$DRY" = 1 ]; then
    EMBED_ARGS=(--images 12 --batch-size 4 --device cpu --synthetic "$OUT/jpegs")
else
    EMBED_ARGS=(--images 2000 --repeat 10 --batch-size 512 --device cuda --workers 8)
    [ -d "$DATA/chest_xray" ] || EMBED_ARGS+=(--synthetic "$OUT/jpegs")
fi
timeout 200 "$PY" scripts/bench_embed.py --data "$DATA" "${EMBED_ARGS[@]}" --gpu-jpeg 2>&1 | tee "$OUT/bench_embed.log"

step "3. FAISS on the GPU at 10^6 and 10^7 vectors"
if [ "$DRY" = 1 ]; then
    INDEX_ARGS=(--gpu --gpu-on-cpu --sizes 2000 --types flat ivf --queries 100 --nprobe 8 32)
else
    INDEX_ARGS=(--gpu --sizes 1000000 10000000 --types flat ivf --queries 1000 --nprobe 8 16 32 64 128)
fi
timeout 260 "$PY" scripts/bench_index.py "${INDEX_ARGS[@]}" --out "$OUT/bench_index_gpu.json" 2>&1 \
    | tee "$OUT/bench_index_gpu.log"

step "done"
echo "results in $OUT/ (device.txt, pytest_gpu.log, bench_embed.log, bench_index_gpu.json)"
