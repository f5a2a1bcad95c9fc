# sMLPNet-S (C=96, depths 2-10-24-2, MLP ratio 3), ImageNet-1k at 224, same recipe
# as sMLPNet-T with drop path 0.2 (official preset), batch 8 x 128 = 1024.
# Params / FLOPs (mmpretrain's tools/analysis_tools/get_flops.py): 48.56 M / 10.35 G.
_base_ = './smlpnet-t_8xb128_in1k.py'

model = dict(
    backbone=dict(arch='small', drop_path_rate=0.2),
    head=dict(in_channels=768))
