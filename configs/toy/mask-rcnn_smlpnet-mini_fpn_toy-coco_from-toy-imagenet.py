# The toy detector started from the toy classifier (pretrain -> finetune path):
# the backbone of configs/toy/smlpnet-mini_toy-imagenet.py (same arch, trained at
# 128 px) initialises this one through init_cfg; the axial weights are resized from
# the classifier's token grids (32/16/8/4) to this config's reference (56/28/14/7) on
# load. tools/demo_finetune.sh trains the classifier into the path below.
_base_ = './mask-rcnn_smlpnet-mini_fpn_toy-coco.py'

pretrained = 'work_dirs/demo_finetune/cls/epoch_20.pth'
model = dict(
    backbone=dict(
        init_cfg=dict(_delete_=True, type='Pretrained', checkpoint=pretrained,
                      prefix='backbone.')))
