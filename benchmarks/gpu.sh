#!/usr/bin/env bash
# The lent GPU machine proves and measures everything at once: a CUDA smoke run of every GPU path,
# then every GPU figure vjfer tracks; <= 8 minutes on one H200, every step under its own time limit
# (a failed or timed-out step costs only itself), results in OUT as three files:
#   gpu.md (the summary: each step's status, the figures), gpu.json (all of it), gpu.log (output).
#
# First, once, on a machine with a registry (the GPU machine is offline and has no PyAV):
#   EXTRA="pytest pluggy iniconfig pygments packaging" bash ../shared/device/wheels.sh
# (the cp312 PyAV wheel, ~35 MB, and pytest's pure-Python wheels, ~2 MB, into .whl/, which git
# ignores; the machine has neither, and the cuda-tests step runs pytest).
# Then on the GPU machine, in the project root, with .whl/ carried along (vjfer runs from the tree):
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
#     && export PYTHONPATH=/tmp/site:$PWD PYTHON=python3 PYTHONUNBUFFERED=1 && bash benchmarks/gpu.sh "$OUT"
# Rehearse it on any CPU machine first (tiny shapes, --device cpu; CUDA-only steps say "skipped: no CUDA"):
#   bash benchmarks/gpu.sh --rehearse OUT
# GPU_STEPS=REGEX runs only the steps whose names match (the others are listed as not selected);
# GPU_BUDGET_S (default 470) caps the whole run: a step's limit never passes what is left of it.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=gpu
if [ "${1:-}" = "--rehearse" ]; then mode=rehearsal; shift; fi
out="${1:-${OUT:-gpu-results}}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
PY="${PYTHON:-python3}"
budget="${GPU_BUDGET_S:-470}"
only="${GPU_STEPS:-}"
work="$(mktemp -d "${TMPDIR:-/tmp}/vjfer-gpu.XXXXXX")"  # scratch: caches, videos, step results
mkdir -p "$work/results"
log="$out/gpu.log"
: > "$log"
: > "$work/steps.tsv"
started=$SECONDS
export PYTHONUNBUFFERED=1

step() {  # step NAME LIMIT_S ESTIMATE COMMAND...   (ESTIMATE: the expected seconds on an H200)
    local name=$1 limit=$2 estimate=$3 rc
    shift 3
    local left=$((budget - 20 - (SECONDS - started)))  # 20 s kept for the summary
    if [ -n "$only" ] && ! [[ $name =~ ^($only)$ ]]; then
        printf '%s\t%s\t%s\tselect\t0\n' "$name" "$limit" "$estimate" >> "$work/steps.tsv"
        return
    fi
    if [ "$left" -lt 10 ]; then
        printf '%s\t%s\t%s\tbudget\t0\n' "$name" "$limit" "$estimate" >> "$work/steps.tsv"
        echo "== $name: skipped, ${left} s of the budget left" | tee -a "$log"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name (limit $limit s, ~$estimate s on an H200): $*" | tee -a "$log"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >> "$log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$limit" "$estimate" "$rc" "$((SECONDS - start))" \
        >> "$work/steps.tsv"
    echo "== $name: exit $rc in $((SECONDS - start)) s" | tee -a "$log"
}

R="$work/results"
if [ "$mode" = gpu ]; then
    dev=cuda smoke_enc=vjepa-l16 emotions=8 fig_enc=vjepa-h16-384 iters=6 warmup=2 clips=8
    extract_args=(--videos 32 --workers 12 --batch-size 16 --repeat 1 --write-mb 1024)
    shape=(--tokens 4608 --dim 1280 --videos 24) threads=8 heads=1,5,40
    # --batch-heads: 1-40 heads a step at the tiny and the real shape (the stage-2 cache), families
    batched=(--batched 1,5,10,40 --batched-shapes 256x64,4608x1280 --real-steps 3 --repeat 2)
else  # the same steps at tiny shapes on the CPU
    dev=cpu smoke_enc=tiny emotions=2 fig_enc=tiny iters=2 warmup=1 clips=2
    extract_args=(--videos 2 --frames 70 --size 320x180 --workers 1 --batch-size 4 --repeat 1
        --write-mb 8)
    shape=(--tokens 256 --dim 64 --videos 8) threads=2 heads=1,5
    batched=(--batched 1,5 --batched-shapes 256x64 --steps 2 --repeat 1 --family-epochs 1)
fi
smoke=("$PY" benchmarks/smoke.py --work "$work" --device "$dev" --encoder "$smoke_enc" --workers 4)

step preflight 30 5 "$PY" benchmarks/gpu_summary.py environment --json "$R/preflight.json"
# The smoke run: every CUDA path once (estimates: vjepa-l16 at 1.2 TFLOP a clip, ~350 clips)
step cuda-tests 90 30 "${smoke[@]}" cuda-tests
step data 45 12 "${smoke[@]}" data --emotions "$emotions"
step extract-bf16 60 20 "${smoke[@]}" extract --dtype bf16
step extract-fp16 60 15 "${smoke[@]}" extract --dtype fp16
step probe 60 25 "${smoke[@]}" probe
step int8 60 25 "${smoke[@]}" int8
step cross 45 10 "${smoke[@]}" cross
step report 60 15 "${smoke[@]}" report
step predict 45 12 "${smoke[@]}" predict
step nccl 45 10 "${smoke[@]}" nccl
step ranks 60 20 "${smoke[@]}" ranks
# The figures. Encoder: 9.3 TFLOP a clip at ~500 TFLOP/s = ~19 ms, so batch 16 x 8 calls ~2.4 s
# after ~10 s of random initialisation on the CPU.
for b in 1 4 8 16; do
    step "encoder-b$b" 45 15 "$PY" benchmarks/encoder.py --device "$dev" --encoder "$fig_enc" \
        --batch-size "$b" --iters "$iters" --warmup "$warmup" --json "$R/encoder-b$b.json"
done
# fp32 is ~10x slower than bf16: 8 clips ~2 s; most of the 20 s is making the 720p videos
step agreement 60 20 "$PY" benchmarks/agreement.py --device "$dev" --encoder "$fig_enc" \
    --clips "$clips" --batch-size 2 --json "$R/agreement.json"
# 32 videos x 110 frames of 1280x720 H.264 (~10 s to make), ~256 clips at ~50 clips/s twice
step extract 90 45 "$PY" benchmarks/extract.py --encoder "$fig_enc" --random-weights \
    --device "$dev" --work "$work/extract" "${extract_args[@]}" --json "$R/extract.json"
# 24 videos x 8 clips of 11.8 MB (2.3 GB): ~20 reads of it at a few GB/s, 12 attentive epochs,
# its int8 copy (kept for heads) read cold and warm and decoded on the device
step stage2 90 45 "$PY" benchmarks/stage2.py --dir "$work/stage2" "${shape[@]}" \
    --threads "$threads" --device "$dev" --probe attentive --epoch-vs-read --store int8 \
    --repeat 1 --json "$R/stage2.json"
# the same cache and its int8 copy: 4 x (1 + 5 + 40) heads x 6 steps of ~20 ms; then 1-40 heads
# batched and one by one (~2 x 56 head-steps a step size), 3 family passes x 2 rounds (~20 s)
step heads 120 60 "$PY" benchmarks/heads.py --dir "$work/stage2" "${shape[@]}" \
    --device "$dev" --heads "$heads" "${batched[@]}" --json "$R/heads.json"

"$PY" benchmarks/gpu_summary.py write --mode "$mode" --work "$work" --out "$out" \
    --wall "$((SECONDS - started))" --budget "$budget" 2>&1 | tee -a "$log"
status=${PIPESTATUS[0]}
rm -rf "$work"
exit "$status"
