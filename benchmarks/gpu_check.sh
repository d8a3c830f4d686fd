#!/usr/bin/env bash
# The project's GPU check in one short run (about 3 minutes): the CUDA tests, verify on CUDA, the GPU benchmark.
#
# Usage (from the repository root, on a machine with a CUDA GPU and torch, lightning, torchmetrics installed):
#     OUT=/tmp/gpu_out bash benchmarks/gpu_check.sh
# Wheels in .whl/ (jsonargparse, docstring-parser, typeshed-client: the CLI's parser) are installed into
# /tmp/site first when present. Every log and JSON goes to $OUT: check.log (everything), verify.json,
# bench_cuda.json (both hidden sizes), bench_cuda_h50.json, bench_cuda_h100.json. Each stage has its own timeout,
# so one hang cannot take the whole budget; the exit status is the first failing stage's.
set -o pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
LOG="$OUT/check.log"
status=0

stage() {  # stage SECONDS NAME COMMAND...: run with a timeout, log it, remember the first failure
    local seconds=$1 name=$2
    shift 2
    echo "=== $name ($(date +%T), timeout ${seconds}s): $*" | tee -a "$LOG"
    timeout "$seconds" "$@" 2>&1 | tee -a "$LOG"
    local rc=$?
    echo "=== $name: exit $rc" | tee -a "$LOG"
    if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then status=$rc; fi
}

if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl 2>&1 | tail -3 | tee -a "$LOG"
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi

stage 10 gpu nvidia-smi -L
stage 90 bench-h50 python3 benchmarks/bench_step.py --device cuda --hidden 50 --steps 200 --repeats 3 \
    --warmup 20 --json "$OUT/bench_cuda_h50.json"
stage 60 cuda-tests python3 -m pytest -q -m cuda -p no:cacheprovider --no-header -rs tests
stage 45 bench-h100 python3 benchmarks/bench_step.py --device cuda --hidden 100 --steps 200 --repeats 2 \
    --warmup 20 --rows floor fused front_door graph fit_graph \
    --json "$OUT/bench_cuda_h100.json"
stage 20 verify python3 -m train verify --json "$OUT/verify.json"
python3 - "$OUT" <<'EOF' 2>&1 | tee -a "$LOG"
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
rows = [r for h in (50, 100) if (out / f"bench_cuda_h{h}.json").exists()
        for r in json.loads((out / f"bench_cuda_h{h}.json").read_text())]
(out / "bench_cuda.json").write_text(json.dumps(rows, indent=1) + "\n")
print(f"bench_cuda.json: {len(rows)} rows")
EOF
echo "=== gpu_check: exit $status" | tee -a "$LOG"
exit "$status"
