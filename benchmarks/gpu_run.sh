#!/usr/bin/env bash
# The one prepared GPU session: CUDA tests, in-place and windowed runs on CUDA,
# kernel check, benchmarks on the GPU.
# Run from the repository root on the lent GPU machine, with wheels of what that
# machine lacks in .whl/ (nengo, numpy<2.4).
# Results go to $OUT (tests.log, in_place.md, gpu_check.md/json, bench_cuda.md).
set -u
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target /tmp/site .whl/*.whl || exit 2
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
rc=0
echo "== 1. CUDA tests"; date
# -p no:nengo: nengo's pytest plugin needs pytest<8; these tests do not use it
timeout ${TEST_TIMEOUT:-150} python3 -m pytest -q -p no:cacheprovider -p no:nengo \
    tests/test_program.py tests/test_window.py tests/test_kernels_triton.py \
    tests/test_module.py \
    2>&1 | tee "$OUT/tests.log" | tail -15 || rc=1
# SKIP_IN_PLACE / SKIP_KERNEL_CHECK leave out steps 2 / 4 when device time is short
echo "== 2. stepping in place on CUDA"; date
if [ -z "${SKIP_IN_PLACE:-}" ]; then
    timeout ${IN_PLACE_TIMEOUT:-120} python3 benchmarks/cuda_in_place_check.py \
        | tee "$OUT/in_place.md" || rc=1
fi
echo "== 3. windowed runs and torch_compile=True on CUDA"; date
timeout ${WINDOW_TIMEOUT:-200} python3 benchmarks/cuda_window_check.py || rc=1
echo "== 4. kernel check"; date
if [ -z "${SKIP_KERNEL_CHECK:-}" ]; then
    timeout ${CHECK_TIMEOUT:-300} python3 benchmarks/gpu_check.py --reps 5 \
        --time-budget ${CHECK_TIME_BUDGET:-180} ${CHECK_ARGS:-} || rc=1
fi
[ -n "${SKIP_BENCH:-}" ] && exit $rc
echo "== 5. benchmarks, snntorch_nengo on the GPU"; date
# BENCH_ARGS (e.g. "--only ff_mlp") narrows the cases when device time is short
timeout ${BENCH_TIMEOUT:-240} python3 benchmarks/run.py --quick --device cuda \
    ${BENCH_ARGS:-} --markdown "$OUT/bench_cuda.md" || rc=1
date
exit $rc
