_base_ = './mask-rcnn_smlpnet-t_fpn_ms-crop-3x_coco.py'

pretrained = 'checkpoints/smlpnet-b_in1k.pth'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.3,
                  init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[112, 224, 448, 896]))
