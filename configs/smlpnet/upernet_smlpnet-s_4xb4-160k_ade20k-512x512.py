# UperNet with sMLPNet-S on ADE20K (see the sMLPNet-T config for the recipe)
_base_ = './upernet_smlpnet-t_4xb4-160k_ade20k-512x512.py'

pretrained = 'checkpoints/smlpnet-s_in1k.pth'
model = dict(
    backbone=dict(arch='small', drop_path_rate=0.3,
                  init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
