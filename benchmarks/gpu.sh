#!/usr/bin/env bash
# Every GPU figure vjfer tracks, in one go (< 8 minutes on one H100/H200), into one Markdown table.
#
#   bash benchmarks/gpu.sh [OUT_DIR]        # default OUT_DIR: $OUT if set, else gpu-results/
#
# 1. encoder: vjepa-h16-384 (random weights) clips/s and bf16 MFU at batch 1, 4, 8, 16
# 2. agreement: bf16 and fp16 autocast tokens vs float32 (relative L2, cosine)
# 3. extraction: end to end on generated 1280x720 H.264 videos vs the encoder alone
# 4. stage 2: reader vs raw reads (cold/warm), one epoch of the attentive probe vs its read, and
#    one pass of 5 folds vs fold by fold, on a 2.3 GB cache of real clip shape (N 4608, D 1280)
# Each step has its own time limit, so one failure leaves the others' figures.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu-results}}"
mkdir -p "$out"
PY="${PYTHON:-python}"
log="$out/gpu.log"
: > "$log"
step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*" | tee -a "$log"
    local start=$SECONDS
    timeout "$limit" "$@" >> "$log" 2>&1
    echo "== $name: exit $? in $((SECONDS - start)) s" | tee -a "$log"
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >> "$log" 2>&1
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" >> "$log" 2>&1

for b in 1 4 8 16; do
    step "encoder-b$b" 90 "$PY" benchmarks/encoder.py --device cuda --batch-size "$b" --iters 6 \
        --warmup 2 --json "$out/encoder-b$b.json"
done
step agreement 90 "$PY" benchmarks/agreement.py --device cuda --clips 8 --json "$out/agreement.json"
step extract 150 "$PY" benchmarks/extract.py --encoder vjepa-h16-384 --random-weights --device cuda \
    --videos 16 --workers 8 --batch-size 16 --repeat 1 --write-mb 1024
step stage2 150 "$PY" benchmarks/stage2.py --dir "$out/stage2-cache" --videos 24 --threads 8 \
    --device cuda --probe attentive --epoch-vs-read --repeat 1 --json "$out/stage2.json"
rm -rf "$out/stage2-cache"

"$PY" - "$out" <<'PYEOF' | tee "$out/gpu.md"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def load(name):
    p = out / name
    return json.loads(p.read_text()) if p.exists() else None
rows = ["| figure | value |", "|---|---|"]
for b in (1, 4, 8, 16):
    r = load(f"encoder-b{b}.json")
    if r:
        mfu = f"{r['mfu']:.1%}" if r.get("mfu") else "n/a"
        rows.append(f"| vjepa-h16-384 bf16, batch {b} | {r['clips_per_s']:.2f} clips/s, "
                    f"{r['achieved_tflops']:.0f} TFLOP/s, MFU {mfu}, {r['peak_memory_gib']:.1f} GiB |")
a = load("agreement.json")
if a:
    for k in ("bf16_autocast", "fp16_autocast", "fp16_storage_of_fp32"):
        v = a[k]
        rows.append(f"| tokens {k} vs fp32 | rel. L2 {v['relative_l2']:.2e}, cosine mean "
                    f"{v['cosine_mean']:.6f}, p1 {v['cosine_p1']:.6f} |")
s = load("stage2.json")
if s:
    for state in ("cold", "warm"):
        v = s[state]
        rows.append(f"| stage-2 reader vs raw, {state} | {v['reader_gb_s']:.2f} vs {v['raw_gb_s']:.2f} GB/s "
                    f"(parallel raw {v['raw_parallel_gb_s']:.2f}): {v['reader_vs_raw']:.2f} |")
    for state, v in s.get("epoch_vs_read", {}).items():
        rows.append(f"| attentive epoch / read, {state} | {v['epoch_s']:.2f} s / {v['read_s']:.2f} s "
                    f"= {v['epoch_over_read']:.2f} |")
    p = s.get("passes")
    if p:
        rows.append(f"| one pass vs fold by fold (5 folds, cold) | bytes {p['bytes_ratio']:.3f}, "
                    f"wall {p['wall_ratio']:.2f} |")
print("\n".join(rows))
print("\nextraction: see the Markdown block in gpu.log")
PYEOF
