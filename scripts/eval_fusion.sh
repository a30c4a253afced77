#!/usr/bin/env bash
# Fuse roadscene/test and tno with every method (learned ones with the released weights) and score them with
# the standard metric suite: the table in weights/README.md. Usage: scripts/eval_fusion.sh [methods...]
set -euo pipefail
data=${RGBT_DATA:-../shared/data}
methods=("$@")
[ ${#methods[@]} -eq 0 ] && methods=(average max weighted laplacian gff densefuse ddcgan swinfusion cddfuse)
for ds in tno roadscene/test; do
  slug=${ds//\//_}
  for m in "${methods[@]}"; do
    rgbt fuse --method "$m" --ir "$data/$ds/ir" --vis "$data/$ds/vi" --out "runs/eval/$slug/$m"
  done
  rgbt evaluate --fused "runs/eval/$slug" --ir "$data/$ds/ir" --vis "$data/$ds/vi" \
    --csv "runs/eval/$slug.csv" --overwrite | tee "runs/eval/$slug.md"
done
