#!/usr/bin/env bash
# The pretrain -> finetune path on toy data (run through `make demo-finetune`):
# train the toy sMLPNet classifier (mmpretrain, 128 px), then start the toy Mask
# R-CNN (mmdet, axial weights of a 224 reference) from that checkpoint through
# init_cfg with prefix 'backbone.'. The log shows the backbone tensors the checkpoint
# provides (all of them: "missing: none") and the axial weights resized on load.
#   WORK_DIR (default work_dirs/demo_finetune), DATA_DIR (default data), DET_ITERS
#   (detector iterations, default 200) may be set.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || { echo "run 'make demo-finetune' (or bash tools/install.sh) first" >&2; exit 1; }
WORK=${WORK_DIR:-work_dirs/demo_finetune}
DATA=${DATA_DIR:-data}
CLS=configs/toy/smlpnet-mini_toy-imagenet.py
DET=configs/toy/mask-rcnn_smlpnet-mini_fpn_toy-coco_from-toy-imagenet.py

"$PY" tools/misc/make_toy_data.py imagenet --out "$DATA"
"$PY" tools/misc/make_toy_data.py coco --out "$DATA"
"$PY" tools/train.py "$CLS" --work-dir "$WORK/cls" \
    --cfg-options "train_dataloader.dataset.data_root=$DATA/toy_imagenet/" \
    "val_dataloader.dataset.data_root=$DATA/toy_imagenet/" \
    "test_dataloader.dataset.data_root=$DATA/toy_imagenet/"
CKPT=$(cat "$WORK/cls/last_checkpoint")
ITERS=${DET_ITERS:-200}
"$PY" tools/train.py "$DET" --work-dir "$WORK/det" \
    --cfg-options "model.backbone.init_cfg.checkpoint=$CKPT" \
    "train_cfg.max_iters=$ITERS" "train_cfg.val_interval=$ITERS" \
    "default_hooks.checkpoint.interval=$ITERS" \
    "param_scheduler.1.end=$ITERS" \
    "train_dataloader.dataset.data_root=$DATA/toy_coco/" \
    "val_dataloader.dataset.data_root=$DATA/toy_coco/" \
    "test_dataloader.dataset.data_root=$DATA/toy_coco/" \
    "val_evaluator.ann_file=$DATA/toy_coco/annotations/instances_val.json" \
    "test_evaluator.ann_file=$DATA/toy_coco/annotations/instances_val.json" \
    2>&1 | tee "$WORK/det_train.log"
echo
echo "backbone initialisation from the classifier ($CKPT):"
grep -h "backbone tensors\|Resized .*mix" "$WORK/det_train.log" | head -n 3
if grep -q "missing keys in source state_dict" "$WORK/det_train.log"; then
    echo "some weights were missing (see the log)"; exit 1
fi
