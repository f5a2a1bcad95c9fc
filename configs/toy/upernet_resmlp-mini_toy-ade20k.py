# UperNet with a small ResMLP on the toy ADE20K set (tools/misc/make_toy_data.py
# ade20k), sized for a 2-core CPU: the sMLPNet toy segmentor
# (./upernet_smlpnet-mini_toy-ade20k.py: data, heads, schedule, sliding-window
# test) with its backbone switched to ResMLP (C=64, 4 blocks, patch 16, MLP ratio
# 2) and its simple feature pyramid (with_pyramid=True: 4 levels at strides 4-32,
# 64 channels each).
#   python tools/misc/make_toy_data.py ade20k --out data/
#   python tools/train.py configs/toy/upernet_resmlp-mini_toy-ade20k.py
# The token-mixing matrix belongs to the 10 x 10 patch grid of the 160 x 160 crop
# (the sliding window): training and slide testing use it as it is.
_base_ = './upernet_smlpnet-mini_toy-ade20k.py'

embed_dims = 64
model = dict(
    backbone=dict(
        _delete_=True,
        type='ResMLP',
        arch=dict(embed_dims=embed_dims, num_blocks=4, patch_size=16, mlp_ratio=2),
        img_size={{_base_.crop_size}},
        with_pyramid=True),
    decode_head=dict(in_channels=[embed_dims] * 4),
    auxiliary_head=dict(in_channels=embed_dims))  # level 2 (stride 16)

optim_wrapper = dict(paramwise_cfg=dict(flat_decay_mult=0., bias_decay_mult=0.))
