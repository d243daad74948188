#!/usr/bin/env bash
# Everything the GPU rows of docs/benchmarks.md need, in one call on a lent GPU machine (the
# device tool: no network, so the inputs travel as a packed cache made by benchmarks/gpu_pack.py):
#   python benchmarks/gpu_pack.py -o .gpu/cache      # here; then run this there, carrying .gpu
#   OUT=/tmp/gpu bash benchmarks/gpu.sh
# STEPS picks what runs (default, in this order: "inference variants training run"; "reference", the
# classic 40k-step run, only when named; RESUME=1 continues a reference stopped on the same machine).
# Each step has its own time limit and the script goes on when one fails; all results end up in
# $OUT/gpu-results.tar.gz (plus gpu.log), so a partial run still brings back what it measured.
# All of it takes about 13 minutes of an H200, more than one device call may run (600 s): split it,
# e.g. STEPS="variants training" in one call and STEPS="inference run" in the next.
# docs/benchmarks.md's GPU numbers (session 4) came from three shorter calls within a 15-minute loan: an earlier version of this script (inference of every
# backend, training, the 2-minute run, compile-fp16), then variants.py before and after the
# fused-norm/NCHW/widened-conv changes, with inference.py again after them.
set -u
export PYTHONPATH="$PWD/src" PYTHONUNBUFFERED=1 INSTYLE_CACHE="$PWD/.gpu/cache"
OUT=${OUT:-/tmp/instyle-gpu}
R="$OUT/r"; mkdir -p "$R"
PY=${PY:-python3}
MODEL=src/instyle/zoo/starry-night.safetensors
C="$INSTYLE_CACHE/data"
step() { echo "== $(date +%T) $*"; }
finish() { tar -C "$OUT" -czf "$OUT/gpu-results.tar.gz" r; step "packed $(ls "$R" | wc -l) files"; }
trap finish EXIT

step machine
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$R/gpu.txt"
$PY -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))' | tee -a "$R/gpu.txt"

STEPS=${STEPS:-inference variants training run}
want() { [[ " $STEPS " == *" $1 "* ]]; }

if want inference; then
step "inference, library backends (T_INF=${T_INF:=120}s)"
timeout "$T_INF" $PY benchmarks/inference.py --device cuda -m "$MODEL" --rounds 10 --warmup 2 \
  --backends eager fp16 cuda-graphs compile-fp16 --sizes 256x256 1920x1080 3840x2160 --out "$R/inference" \
  || step "FAILED inference"
fi

# The 4K candidates, most promising first (rows print as they finish, so a timeout keeps the first
# ones): compile-fp16-nchw-pad8 is the compile-fp16 backend; s2dN computes the 9x9 convolution to RGB
# (5.3 ms of its 19.3 ms 4K frame on the H200) on NxN pixel blocks, s2dNio also the one from RGB;
# fold computes the upsampling convolutions at the low resolution (instyle.inference.rewrites).
if want variants; then
step "inference variants at 4K (T_VAR=${T_VAR:=200}s)"
timeout "$T_VAR" $PY benchmarks/variants.py -m "$MODEL" --sizes 3840x2160 --rounds 15 --variants \
  eager-fp32 compile-fp16-nchw-pad8 compile-fp16-nchw-pad8-s2d2 compile-fp16-nchw-pad8-s2d4 \
  compile-fp16-nchw-pad8-s2d2io compile-fp16-nchw-pad8-s2d4io compile-fp16-nchw-pad8-fold \
  compile-fp16-nchw-pad8-fold-s2d2 eager-fp16-nchw-pad8 eager-fp16-nchw-pad8-s2d2 eager-fp16-nchw-pad8-fold-s2d2 \
  --profile compile-fp16-nchw-pad8-s2d2 --out "$R/variants" || step "FAILED variants"
fi

# bf16-hostcheck: the step as it was before instyle.training.guard.StepGuard kept it on the device;
# compile-bf16: `instyle train --compile` (the first step compiles, the warm-up step absorbs it);
# compile-bf16-graphs: `instyle train --cuda-graphs`, the step replayed as CUDA graphs (batch 4 is
# launch-bound: 24 ms/step on the H200 for fp32 and bf16 alike).
if want training; then
for B in 4 16; do
  [ "$B" = 4 ] && MODES=${TB4_MODES:-bf16 bf16-hostcheck compile-bf16 compile-bf16-graphs} \
               || MODES=${TB16_MODES:-bf16 compile-bf16-graphs}
  step "training steps, batch $B: fp32 $MODES (T_TB=${T_TB:=200}s)"
  timeout "$T_TB" $PY benchmarks/training.py --device cuda --vgg random --batch "$B" --steps 10 --rounds 3 \
    --modes fp32 $MODES --out "$R/training-b$B" || step "FAILED training b$B"
done
fi

if want run; then
# A style trained against the wall clock: batch 16, bf16 (what `auto` picks on CUDA), about
# T_RUN_BUDGET seconds of steps sized from the step time measured above. Score it afterwards, here,
# with `instyle evaluate starry-night r/starry-night-gpu.safetensors --photos ...`.
STEP_S=$($PY -c "import json,sys; r={x['mode']:x for x in json.load(open(sys.argv[1]))['rows']}; print(r['bf16']['s_per_step'])" \
  "$R/training-b16/training-cuda.json" 2>/dev/null || echo 0.05)
ITERS=$($PY -c "print(max(100, int(${T_RUN_BUDGET:=110} / ($STEP_S * 1.15))))")
step "train starry-night on the GPU: $ITERS steps at ${STEP_S}s/step (T_RUN=${T_RUN:=170}s)"
timeout "$T_RUN" $PY -m instyle train --style "$C/style/starry-night.png" --content "$C/content" \
  --style-size 384 --tv-weight 30 --grad-clip 500 --batch 16 --iters "$ITERS" --decay $((ITERS * 3 / 10)) \
  --eval-every $((ITERS / 10)) --checkpoint-every 100000 --workers auto --keep-best --quiet \
  -o "$R/starry-night-gpu.safetensors" || step "FAILED train"
fi

# The goal's reference, only when asked (STEPS=reference, a call of its own): the classic recipe,
# 40k steps at batch 4 with a constant learning rate, same style, style size and loss weights as the
# 2-minute run, compiled and replayed as CUDA graphs (batch 4 is launch-bound otherwise). It writes
# to runs/ (git-ignored, so it stays on a warm machine between calls) with a checkpoint every 4000
# steps: when the limit stops it, the next call with RESUME=1 goes on from there. If the CUDA-graph
# step fails outright, it runs again with --compile alone in the time left. The log (held-out curve
# with wall-clock times) comes back each time; score the finished model against the 2-minute one
# with `instyle evaluate`.
if want reference; then
REF=runs/gpu-reference; mkdir -p "$REF"
ref() {  # ref SECONDS EXTRA-FLAGS...
  local t=$1; shift
  timeout "$t" $PY -m instyle train --style "$C/style/starry-night.png" --content "$C/content" \
    --style-size 384 --tv-weight 30 --grad-clip 500 --batch 4 --iters 40000 --eval-every 2000 \
    --checkpoint-every 4000 --workers auto --compile --quiet -o "$REF/reference.safetensors" "$@"
}
RESUME_FLAG=(); [ -n "${RESUME:-}" ] && [ -f "$REF/reference.ckpt.safetensors" ] && RESUME_FLAG=(--resume)
step "the classic 40k-step recipe ${RESUME_FLAG[*]} (T_REF=${T_REF:=560}s)"
T_START=$SECONDS
ref "$T_REF" --cuda-graphs "${RESUME_FLAG[@]}"; RC=$?
if [ "$RC" != 0 ] && [ "$RC" != 124 ] && [ $((T_REF - (SECONDS - T_START))) -gt 120 ]; then
  step "FAILED with CUDA graphs (rc $RC): again with --compile alone"
  RESUME_FLAG=(); [ -f "$REF/reference.ckpt.safetensors" ] && RESUME_FLAG=(--resume)
  ref $((T_REF - (SECONDS - T_START))) "${RESUME_FLAG[@]}"; RC=$?
fi
[ "$RC" = 0 ] && step "reference finished" || step "reference stopped (rc $RC); RESUME=1 goes on from its checkpoint"
cp "$REF"/reference.log.jsonl "$REF"/reference.json "$REF"/reference.safetensors "$R"/ 2>/dev/null
fi
