# S2-MLP-deep (C=384, 36 blocks, patch 16, expansion 4), ImageNet-1k at 224: the
# DeiT recipe of ./s2mlp-wide_8xb128_in1k.py (sources there) with the deep preset.
# Params / FLOPs at 224 (with the final LayerNorm): 53.92 M / 10.49 G (paper: 51 M /
# 10.5 G; see the S2MLP docstring for the parameter difference).
_base_ = './s2mlp-wide_8xb128_in1k.py'

model = dict(backbone=dict(arch='deep'), head=dict(in_channels=384))
