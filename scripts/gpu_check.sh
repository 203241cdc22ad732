#!/usr/bin/env bash
# The GPU check: one command for a lent GPU machine, about 8 minutes, results under $OUT.
#
#   OUT=/path/for/results bash scripts/gpu_check.sh        (the device tool sets $OUT)
#
# 1. env.txt: the GPU, torch and CUDA, which of ppafl's packages the machine has;
# 2. train_only.*: vmapped training of 10 and 100 clients on the GPU against one client
#    after another on its CPU (benchmarks/train_bench.py --train-only; needs no crypto);
# 3. rounds.*: the paper's rounds (benchmarks/round_bench.py: mnist_cnn, 10 clients a round,
#    E=5, B=10, SHE at the paper's parameters, the batched executor): one round's work
#    (10 jobs trained on the GPU and sealed, the server's sum, decryption), its pieces, two
#    global versions through the engine, then as many paper rounds as fit in the rest of
#    the budget as a full run directory (rounds/paper_run/: metrics.csv, summary.json, ...).
#
# Data: full MNIST from $PPAFL_DATA_ROOT, else shared/data or ../shared/data beside the
# scripts (copy MNIST/raw into the checkout's shared/data before the loan: the device tool
# carries shared/); without it the embedded mnist5k subset runs, 40 samples per client
# instead of the paper's 600 (round_bench's JSON says which). Real SHE where the machine
# can encrypt, else modeled (the same integers without ciphertexts; crypto.txt says why).
# Knobs: GPU_CHECK_BUDGET_S (default 480), PYTHON (default python3), GPU_CHECK_QUICK=1
# (mnist_2nn, one epoch: a smoke run of this script on any machine).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_check}
BUDGET_S=${GPU_CHECK_BUDGET_S:-480}
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
start=$(date +%s)
left() { echo $((BUDGET_S - ($(date +%s) - start))); }

{
  date -u
  nvidia-smi || echo "nvidia-smi: not found"
  "$PY" - <<'EOF'
import importlib, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
for name in ("numpy", "simpy", "pydantic", "pandas", "yaml", "tqdm", "matplotlib", "mlxtend", "gmpy2", "flint", "ray"):
    try:
        print(name, getattr(importlib.import_module(name), "__version__", "present"))
    except ImportError as exc:
        print(name, "MISSING", exc)
EOF
} > "$OUT/env.txt" 2>&1

data=""
for d in "${PPAFL_DATA_ROOT:-}" shared/data ../shared/data; do
  if [ -n "$d" ] && [ -d "$d/MNIST/raw" ]; then data=$(cd "$d" && pwd); break; fi
done
quick=()
[ "${GPU_CHECK_QUICK:-0}" = 1 ] && quick=(--quick)
if [ -n "$data" ]; then train_data=(--data-root "$data"); round_data=(--dataset mnist --data-root "$data")
else train_data=(); round_data=(--dataset mnist5k); fi

# 2. training only (about 1-2 minutes)
models=mnist_2nn,mnist_cnn
[ ${#quick[@]} -gt 0 ] && models=mnist_2nn
timeout $(( $(left) / 3 )) "$PY" benchmarks/train_bench.py --train-only --models "$models" --clients 10,100 \
  "${train_data[@]}" "${quick[@]}" > "$OUT/train_only.log" 2>&1
echo "train_bench exit $?" >> "$OUT/train_only.log"
grep '^{' "$OUT/train_only.log" | tail -1 > "$OUT/train_only.json"

# 3. the paper's rounds: real SHE where this machine can encrypt
crypto=real
"$PY" -c "from fl.secure import make_codec; make_codec('real', num_values=8, max_clients=2, params='paper')" \
  > "$OUT/crypto.txt" 2>&1 || crypto=modeled
echo "rounds use crypto: $crypto" >> "$OUT/crypto.txt"
budget=$(( $(left) - 10 ))  # round_bench plans for 40 s less than its hard limit
timeout "$budget" "$PY" benchmarks/round_bench.py --executors batched --engine-rounds 2 --crypto "$crypto" \
  "${round_data[@]}" "${quick[@]}" --budget-s $((budget - 40)) --out "$OUT/rounds" > "$OUT/rounds.log" 2>&1
echo "round_bench exit $?" >> "$OUT/rounds.log"
grep '^{' "$OUT/rounds.log" | tail -1 > "$OUT/rounds.json"  # cut short: rounds/measured.json has the measurements
echo "gpu_check: $(( $(date +%s) - start )) s; results in $OUT" | tee -a "$OUT/env.txt"
