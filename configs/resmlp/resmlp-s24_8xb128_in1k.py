# ResMLP-S24 (C=384, 24 blocks, patch 16), ImageNet-1k at 224: the recipe of
# ./resmlp-s12_8xb128_in1k.py (sources there) with the s24 preset, whose LayerScale
# init 1e-5 is the paper's (and libai's) for depth 24.
# Params / FLOPs at 224: 30.02 M / 5.96 G (paper: 30.0 M / 6.0 G).
_base_ = './resmlp-s12_8xb128_in1k.py'

model = dict(backbone=dict(arch='s24'))
