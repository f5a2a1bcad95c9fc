_base_ = [
    'mmdet::swin/retinanet_swin-t-p4-w7_fpn_1x_coco.py', '../_base_/mmsmlp.py'
]

pretrained = 'checkpoints/smlpnet-t_in1k.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='SMLPNet',
        arch='tiny',
        drop_path_rate=0.2,
        out_indices=(1, 2, 3),
        out_norm=(3, ),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained,
                      prefix='backbone.')),
    neck=dict(in_channels=[160, 320, 640]))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        custom_keys={
            'mix_height.bias': dict(decay_mult=0.),
            'mix_width.bias': dict(decay_mult=0.),
        }))
# AtomicCheckpointHook (mmsmlp): the base's CheckpointHook, same arguments, whose
# checkpoints are never half-written and whose old checkpoints are removed only
# after the new one is complete
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
