# ResMLP-S36 (C=384, 36 blocks, patch 16), ImageNet-1k at 224: the recipe of
# ./resmlp-s12_8xb128_in1k.py (sources there) with the s36 preset (LayerScale init
# 1e-6, the paper's for depth > 24).
# Params / FLOPs at 224: 44.69 M / 8.91 G (paper: 44.7 M / 8.9 G).
_base_ = './resmlp-s12_8xb128_in1k.py'

model = dict(backbone=dict(arch='s36'))
