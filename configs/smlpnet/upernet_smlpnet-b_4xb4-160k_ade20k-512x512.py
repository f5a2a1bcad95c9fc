# UperNet with sMLPNet-B on ADE20K (see the sMLPNet-T config for the recipe)
_base_ = './upernet_smlpnet-t_4xb4-160k_ade20k-512x512.py'

pretrained = 'checkpoints/smlpnet-b_in1k.pth'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.3,
                  init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[112, 224, 448, 896]),
    auxiliary_head=dict(in_channels=448))
