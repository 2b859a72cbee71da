#!/usr/bin/env bash
# The checks that need an accelerator, as one script of at most ~8 minutes on
# one GPU or TPU chip:
#   1. the accelerator tests (tests/test_accelerator.py: cuDNN attention
#      against XLA's, bfloat16 steps, dynamic masks equal to the CPU's);
#   2. BERT-Base and BERT-Large phase-1 training steps (seq 128, 20
#      predictions, LAMB, dropout on) in bfloat16 with model.attention=cudnn
#      and xla: step time, examples/s, tokens/s, TFLOP/s and MFU against the
#      chip's published bf16 dense peak (H100/H200: 989 TFLOP/s).
#
#   bash bench/device_check.sh [--quick]      # from the repository root
#
# Needs jax with the accelerator's plugin, flax, optax, numba, pytest and
# ml_collections. A machine without network that lacks a pure-Python package
# takes it from wheels in .whl/ (pip download --no-deps -d .whl NAME==VER
# where pip works); they are installed into /tmp/site first. TensorFlow is
# not needed: nothing here reads shards. Environment: BATCH (default 256),
# STEPS (timed steps per shape, default 20), SIZES (default base,large),
# ATTENTION (default cudnn,xla on GPU, xla on TPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [[ -d .whl ]] && compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}

backend=$("$PY" -c 'import jax; print(jax.default_backend())')
if [[ $backend == cpu ]]; then
  echo "device_check: JAX sees no GPU or TPU (backend: cpu); run this on an" \
       "accelerator machine." >&2
  exit 2
fi
missing=$("$PY" - <<'EOF'
import importlib.util
print(" ".join(m for m in ("flax", "optax", "numba", "pytest", "ml_collections")
               if importlib.util.find_spec(m) is None))
EOF
)
if [[ -n $missing ]]; then
  echo "device_check: missing Python packages: $missing (carry wheels in .whl/)" >&2
  exit 2
fi
"$PY" -c 'import jax; d = jax.devices()[0]; print(f"device_check: {jax.device_count()} x {d.device_kind} ({d.platform}), jax {jax.__version__}")'
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true

echo "== accelerator tests"
timeout 240 "$PY" -m pytest -q -p no:cacheprovider tests/test_accelerator.py

BATCH=${BATCH:-256}
STEPS=${STEPS:-20}
SIZES=${SIZES:-base,large}
if [[ ${1:-} == --quick ]]; then SIZES=base; STEPS=5; fi
ATTENTION=${ATTENTION:-$([[ $backend == gpu ]] && echo cudnn,xla || echo xla)}
echo "== phase-1 steps: sizes $SIZES, batch $BATCH, seq 128, bfloat16, attention $ATTENTION"
timeout 360 "$PY" -m bench.train_bench --size="$SIZES" --seq=128 --preds=20 \
  --batch="$BATCH" --steps="$STEPS" --dtype=bfloat16 --attention="$ATTENTION" \
  --peak_tflops=auto --max_other=16 --quiet_timeout=1
echo "device_check: done"
