_base_ = './mask-rcnn_smlpnet-t_fpn_1x_coco.py'

pretrained = 'checkpoints/smlpnet-s_in1k.pth'
model = dict(
    backbone=dict(arch='small', drop_path_rate=0.3,
                  init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
