# Semantic FPN with sMLPNet-T on ADE20K, 512x512 crops, 80k iterations, 4 GPUs x 4
# images: the PVT / PoolFormer Semantic FPN recipe (AdamW lr 1e-4, poly decay of
# power 0.9) with a linear warm-up. mmseg's Semantic FPN model, ADE20K data,
# runtime and 80k schedule are inherited.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py', 'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_80k.py',
    '../_base_/mmsmlp.py'
]
# mmsmlp.datasets registers the CheckSegMap transform
custom_imports = dict(imports=['mmsmlp', 'mmsmlp.datasets'], allow_failed_imports=False)

crop_size = (512, 512)
num_classes = 150
pretrained = 'checkpoints/smlpnet-t_in1k.pth'  # see the UperNet config
norm_cfg = dict(type='SyncBN', requires_grad=True)

model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,  # the base names ResNet weights
    backbone=dict(
        _delete_=True,
        type='SMLPNet',
        arch='tiny',
        img_size=224,
        out_indices=(0, 1, 2, 3),
        out_norm=(3, ),
        drop_path_rate=0.2,
        norm_cfg=norm_cfg,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[80, 160, 320, 640]),
    decode_head=dict(num_classes=num_classes, norm_cfg=norm_cfg),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='CheckSegMap', num_classes=num_classes, on_invalid='skip'),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='CheckSegMap', num_classes=num_classes, on_invalid='raise'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(batch_size=4, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        custom_keys={
            'mix_height.bias': dict(decay_mult=0.),
            'mix_width.bias': dict(decay_mult=0.),
        }))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=0.9, eta_min=0.0, by_epoch=False, begin=1500,
         end=80000)
]
auto_scale_lr = dict(enable=False, base_batch_size=16)
# AtomicCheckpointHook (mmsmlp): the base's CheckpointHook, same arguments, whose
# checkpoints are never half-written and whose old checkpoints are removed only
# after the new one is complete
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
