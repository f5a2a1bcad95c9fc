# Mask R-CNN with a small S2-MLP on the toy COCO set (tools/misc/make_toy_data.py
# coco), sized for a 2-core CPU: the sMLPNet toy detector
# (./mask-rcnn_smlpnet-mini_fpn_toy-coco.py: data, heads, schedule) with its
# backbone switched to S2-MLP (C=64, 4 blocks, patch 8, MLP ratio 2) and its simple
# feature pyramid (with_pyramid=True: 4 levels at strides 4-32 from the last
# block, 64 channels each, for the FPN). S2-MLP has no size-dependent weights;
# patch 8 keeps the spatial shift's reach (one patch per block) small and cheap.
#   python tools/misc/make_toy_data.py coco --out data/
#   python tools/train.py configs/toy/mask-rcnn_s2mlp-mini_fpn_toy-coco.py
_base_ = './mask-rcnn_smlpnet-mini_fpn_toy-coco.py'

embed_dims = 64
model = dict(
    backbone=dict(
        _delete_=True,
        type='S2MLP',
        arch=dict(embed_dims=embed_dims, num_blocks=4, patch_size=8, mlp_ratio=2),
        img_size=224,
        with_pyramid=True),
    neck=dict(in_channels=[embed_dims] * 4))

# no weight decay on LayerNorms, 1-D parameters and biases (DeiT / timm recipe)
optim_wrapper = dict(paramwise_cfg=dict(flat_decay_mult=0., bias_decay_mult=0.))
