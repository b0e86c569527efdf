#!/usr/bin/env bash
# Every training stage on SynthKitchen (quick), plus the two training-speed benchmarks.
# Usage: bash scripts/synthkitchen_pipeline.sh OUT [EPOCHS]   (about 25 minutes on 2 CPU cores)
set -euxo pipefail
OUT=${1:?output folder}
EPOCHS=${2:-10}
K=${KARMMA:-.venv/bin/karmma}
C="trainer.runs=$OUT/runs trainer.progress=false"
$K synth "$OUT/pre_raw" --seed 100 --size quick      # extractor pre-training recordings
$K prepare "$OUT/pre_raw" "$OUT/pre" --flow dis --short-side 64
$K synth "$OUT/raw" --seed 1 --size quick            # fusion / distillation recordings
$K prepare "$OUT/raw" "$OUT/data" --flow dis --short-side 64
for m in V F A; do
  $K train configs/synthkitchen/unimodal.yaml data.root="$OUT/pre" unimodal_modality=$m trainer.name=unimodal_$m optim.epochs=$EPOCHS $C
done
E="extractors.V=$OUT/runs/unimodal_V/checkpoints/best.ckpt extractors.F=$OUT/runs/unimodal_F/checkpoints/best.ckpt extractors.A=$OUT/runs/unimodal_A/checkpoints/best.ckpt"
$K extract configs/synthkitchen/teacher.yaml data.root="$OUT/data" $E cache.path="$OUT/cache"
$K benchmark training cache configs/synthkitchen/teacher.yaml data.root="$OUT/data" $E cache.path="$OUT/cache" --json "$OUT/bench_cache.json"
$K train configs/synthkitchen/teacher.yaml data.root="$OUT/data" $E optim.epochs=$EPOCHS $C
$K extract configs/synthkitchen/teacher.yaml data.root="$OUT/data" $E cache.path="$OUT/cache" --logits "$OUT/runs/teacher/checkpoints/best.ckpt"
$K benchmark training distill configs/synthkitchen/student.yaml data.root="$OUT/data" teacher_logits=cache cache.path="$OUT/cache" --json "$OUT/bench_distill.json"
$K train configs/synthkitchen/student.yaml data.root="$OUT/data" teacher="$OUT/runs/teacher/checkpoints/best.ckpt" optim.epochs=$EPOCHS $C
$K train configs/synthkitchen/baseline.yaml data.root="$OUT/data" optim.epochs=$EPOCHS $C
$K train configs/synthkitchen/baseline_delta.yaml data.root="$OUT/data" optim.epochs=$EPOCHS $C
