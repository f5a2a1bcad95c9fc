# ResMLP-B24 (C=768, 24 blocks, patch 8: 784 patches at 224), ImageNet-1k at 224:
# the recipe of ./resmlp-s12_8xb128_in1k.py (sources there) with the b24 preset
# (LayerScale init 1e-6, as timm's resmlp_big_24_224 and libai).
# Params / FLOPs at 224: 129.14 M / 100.23 G (facebookresearch/deit
# README_resmlp.md: 129M / 100B). At batch 128 per GPU this model needs a large
# GPU memory; halve the batch and use --auto-scale-lr, or with_cp=True.
_base_ = './resmlp-s12_8xb128_in1k.py'

model = dict(backbone=dict(arch='b24'), head=dict(in_channels=768))
