# sMLPNet-T* (the paper's T*: sMLPNet-T with channel-MLP ratio 2), ImageNet-1k at
# 224, same recipe as sMLPNet-T (drop path 0.0), batch 8 x 128 = 1024.
# Params / FLOPs (mmpretrain's tools/analysis_tools/get_flops.py): 19.18 M / 3.97 G.
_base_ = './smlpnet-t_8xb128_in1k.py'

model = dict(backbone=dict(arch='tiny-a2', drop_path_rate=0.0))
