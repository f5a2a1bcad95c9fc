#!/usr/bin/env bash
# The main job on the embedded toy data (run through `make demo`, which sets up first):
# generate the toy COCO set, train a small sMLPNet Mask R-CNN with tools/train.py,
# evaluate bbox and segm mAP with tools/test.py and save pictures of the predictions.
#   WORK_DIR (default work_dirs/demo_det) and DATA_DIR (default data) may be set.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || { echo "run 'make demo' (or bash tools/install.sh) first" >&2; exit 1; }
CONFIG=configs/toy/mask-rcnn_smlpnet-mini_fpn_toy-coco.py
WORK=${WORK_DIR:-work_dirs/demo_det}
DATA=${DATA_DIR:-data}
start=$(date +%s)

"$PY" tools/misc/make_toy_data.py coco --out "$DATA"
"$PY" tools/train.py "$CONFIG" --work-dir "$WORK" \
    --cfg-options "train_dataloader.dataset.data_root=$DATA/toy_coco/" \
    "val_dataloader.dataset.data_root=$DATA/toy_coco/" \
    "test_dataloader.dataset.data_root=$DATA/toy_coco/" \
    "val_evaluator.ann_file=$DATA/toy_coco/annotations/instances_val.json" \
    "test_evaluator.ann_file=$DATA/toy_coco/annotations/instances_val.json"
trained=$(date +%s)
CKPT=$(cat "$WORK/last_checkpoint")
"$PY" tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK" --show-dir vis \
    --cfg-options "test_dataloader.dataset.data_root=$DATA/toy_coco/" \
    "test_evaluator.ann_file=$DATA/toy_coco/annotations/instances_val.json" \
    | tee "$WORK/test_output.log"
end=$(date +%s)
run=$(ls -td "$WORK"/*/vis 2>/dev/null | head -n 1)
echo
echo "demo: training $((trained - start)) s, evaluation $((end - trained)) s, total $((end - start)) s"
grep -h "bbox_mAP_copypaste\|segm_mAP_copypaste" "$WORK/test_output.log" | tail -n 2 || true
echo "pictures of the predictions: $run"
