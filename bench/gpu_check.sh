#!/usr/bin/env bash
# gpu_check.sh: ONE bounded check of the engine on a lent GPU (SD 1.5-class, 512x512, 30 steps,
# Euler, guidance 7.5), for a machine with no network. At most 8 minutes of wall time; every
# phase has its own timeout and prints its figures as it goes, so a timeout loses only the rest
# of that phase. The phases are subcommands of bench/gpu_check.py (linted and imported by the
# tests, so they keep in step with the engine); this script bounds them and installs what the
# machine lacks.
#
#   P0  packages (wheels from .whl/ when something is missing), imports, the GPU, a bf16 matmul
#   P1  full-size random SD 1.5 weights from configs (bench/sd15_random.py) and a full-size
#       random safety checker (ViT-L/14, never flags): nothing is downloaded
#   P2  plain diffusers: img/s at batch 1, 4, 16 and peak memory
#   P3  the engine process (python -m engine serve through the bot's EngineClient, safety checker,
#       PNGs, previews), fast path OFF: load, batch-1 latency, img/s on a 64-job mixed queue from
#       16 users batched by the bot's FairQueue (up to 16 images), GPU utilisation, peak memory
#   P4  the same with the fast path ON (channels_last, cuDNN benchmark, torch.compile of the UNet
#       and VAE at buckets 512x512x1/4/16, warmed in the foreground): compile warm-up time, then
#       the same figures, and, time permitting, the queue with two batches in flight
#   and a summary table at the end.
#
# Usage, from the checkout's root:
#   bash bench/gpu_check.sh --fetch-wheels   # where pip reaches the index: fills .whl/
#   bash bench/gpu_check.sh                  # on the GPU machine, .whl/ carried beside it
#   GPU_CHECK_TOY=1 bash bench/gpu_check.sh  # dry run on a CPU: toy shapes; checks the script
# Settings (environment): PY (python; default .venv/bin/python if present, else python3),
# OUT (the log goes to $OUT/gpu_check.log; default /tmp/gpu_check_out), WORK (models and caches;
# default /tmp/gpucheck, reused between runs), TOTAL_BUDGET (seconds; default 470),
# GPU_CHECK_COMPILE_MODE (torch.compile mode; default "default", whose warm-up fits the budget;
# "engine": the engine's own default).
#
# The GPU machine (see docs/performance.md): Python 3.12 with torch, transformers, accelerate,
# safetensors, numpy, Pillow and scipy, but no diffusers, pydantic or pydantic-settings; those
# travel as wheels in .whl/ (ignored by git), installed with pip --no-index into $WORK/site.

set -u
cd "$(dirname "$0")/.." || exit 2
PROJECT=$(pwd)
WHEELS_DIR=$PROJECT/.whl
# What the engine and this check need beyond the GPU machine's own packages, at the versions
# the project is tested with (pyproject.toml; .venv).
WHEELS=(diffusers==0.42.1 pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3
        python-dotenv==1.2.4 typing-inspection==0.4.5 annotated-types==0.8.0
        typing-extensions==4.16.0)

if [ "${1:-}" = "--fetch-wheels" ]; then
  mkdir -p "$WHEELS_DIR"
  exec python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$WHEELS_DIR" "${WHEELS[@]}"
fi

T0=$(date +%s)
TOTAL_BUDGET=${TOTAL_BUDGET:-470}
TOY=${GPU_CHECK_TOY:-0}
WORK=${WORK:-/tmp/gpucheck}
OUTDIR=${OUT:-/tmp/gpu_check_out}
if [ -z "${PY:-}" ]; then
  if [ -x "$PROJECT/.venv/bin/python" ]; then PY=$PROJECT/.venv/bin/python; else PY=python3; fi
fi
mkdir -p "$WORK" "$OUTDIR"
LOG=$OUTDIR/gpu_check.log
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1

elapsed() { echo $(( $(date +%s) - T0 )); }
left() { echo $(( TOTAL_BUDGET - $(elapsed) )); }
say() { echo "[$(printf '%4d' "$(elapsed)")s] $*"; }
# phase NAME LIMIT_S COMMAND...: runs COMMAND with at most LIMIT_S seconds, never past the budget.
phase() {
  local name=$1 limit=$2; shift 2
  local budget; budget=$(left)
  [ "$limit" -gt "$budget" ] && limit=$budget
  if [ "$limit" -lt 20 ]; then say "$name: skipped, out of time"; return 0; fi
  say "$name (at most ${limit}s)"
  timeout -k 10 "$limit" "$@"
  local rc=$?
  [ $rc -eq 124 ] && say "$name: TIMED OUT after ${limit}s" || say "$name: rc=$rc"
}

export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export HF_HUB_DISABLE_PROGRESS_BARS=1 TQDM_DISABLE=1 DIFFUSERS_VERBOSITY=error
export TRANSFORMERS_VERBOSITY=error TORCHINDUCTOR_CACHE_DIR=$WORK/inductor
export WORK TOY T0 TOTAL_BUDGET
[ "$TOY" = 1 ] && export OMP_NUM_THREADS=1  # a shared CPU: spinning OpenMP threads crawl
say "project $PROJECT, python $PY, work $WORK, toy=$TOY, budget ${TOTAL_BUDGET}s"

# --- P0: packages and the machine ------------------------------------------------------------
missing=$("$PY" - <<'PY'
import importlib.util
print(" ".join(n for n in ("diffusers", "pydantic", "pydantic_settings", "dotenv")
               if importlib.util.find_spec(n) is None))
PY
)
if [ -n "$missing" ]; then
  say "missing: $missing; installing the wheels in $WHEELS_DIR"
  if ! ls "$WHEELS_DIR"/*.whl >/dev/null 2>&1; then
    say "no wheels in $WHEELS_DIR: run 'bash bench/gpu_check.sh --fetch-wheels' where pip works"
    exit 3
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$WORK/site" "$WHEELS_DIR"/*.whl || { say "wheel install failed"; exit 3; }
  export PYTHONPATH=$WORK/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PROJECT${PYTHONPATH:+:$PYTHONPATH}
"$PY" - <<'PY' || { say "imports failed: see above"; exit 4; }
import importlib
for name in ("torch", "diffusers", "transformers", "pydantic_settings", "engine.worker",
             "bot.jobs.engine_client", "bot.jobs.fair_queue", "bench.gpu_check"):
    module = importlib.import_module(name)
    print(f"  import {name:<24} {getattr(module, '__version__', '')}")
PY
command -v nvidia-smi >/dev/null && nvidia-smi \
  --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv
CHECK=("$PY" "$PROJECT/bench/gpu_check.py")
phase "P0 the machine" 40 "${CHECK[@]}" machine

# --- P1..P4 ----------------------------------------------------------------------------------
phase "P1 build the models" 120 "${CHECK[@]}" build
phase "P2 plain diffusers" 100 "${CHECK[@]}" plain
phase "P3 engine, fast path OFF" 120 "${CHECK[@]}" engine --label off
phase "P4 engine, fast path ON" $(( $(left) - 10 )) "${CHECK[@]}" engine --label on --extras

say "done in $(elapsed) s"
"${CHECK[@]}" summary "$LOG"
sleep 1  # let tee flush the last lines
