# Multi-scale training with random crops, 36 epochs: mmdet's Swin 3x recipe
_base_ = [
    'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py',
    '../_base_/mmsmlp.py'
]

pretrained = 'checkpoints/smlpnet-t_in1k.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='SMLPNet',
        arch='tiny',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        # ImageNet checkpoints hold only the final norm: no new, untrained norms
        out_norm=(3, ),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained,
                      prefix='backbone.')),
    neck=dict(in_channels=[80, 160, 320, 640]))

optim_wrapper = dict(
    paramwise_cfg=dict(
        _delete_=True,
        norm_decay_mult=0.,
        custom_keys={
            'mix_height.bias': dict(decay_mult=0.),
            'mix_width.bias': dict(decay_mult=0.),
        }))
# AtomicCheckpointHook (mmsmlp): the base's CheckpointHook, same arguments, whose
# checkpoints are never half-written and whose old checkpoints are removed only
# after the new one is complete
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
