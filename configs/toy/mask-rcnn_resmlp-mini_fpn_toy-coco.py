# Mask R-CNN with a small ResMLP on the toy COCO set (tools/misc/make_toy_data.py
# coco), sized for a 2-core CPU: the sMLPNet toy detector
# (./mask-rcnn_smlpnet-mini_fpn_toy-coco.py: data, heads, schedule) with its
# backbone switched to ResMLP (C=64, 4 blocks, patch 16, MLP ratio 2) and its
# simple feature pyramid (with_pyramid=True: 4 levels at strides 4-32 from the
# last block, 64 channels each, for the FPN).
#   python tools/misc/make_toy_data.py coco --out data/
#   python tools/train.py configs/toy/mask-rcnn_resmlp-mini_fpn_toy-coco.py
# The token-mixing matrix belongs to the 14 x 14 patch grid of img_size 224 and is
# resized to the grid of every padded batch (192-288 px training scales).
_base_ = './mask-rcnn_smlpnet-mini_fpn_toy-coco.py'

embed_dims = 64
model = dict(
    backbone=dict(
        _delete_=True,
        type='ResMLP',
        arch=dict(embed_dims=embed_dims, num_blocks=4, patch_size=16, mlp_ratio=2),
        img_size=224,
        with_pyramid=True),  # default out_indices: the 4 levels, 64 channels each
    neck=dict(in_channels=[embed_dims] * 4))

# no weight decay on 1-D parameters (Affine alpha / beta, LayerScale) and biases,
# as the ResMLP recipe (timm's optimiser factory)
optim_wrapper = dict(paramwise_cfg=dict(flat_decay_mult=0., bias_decay_mult=0.))
