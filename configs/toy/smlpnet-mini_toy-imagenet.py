# Image classification with a small sMLPNet on the toy ImageNet set (4 shape
# classes, 60 train / 15 val images per class; generate it with
#   python tools/misc/make_toy_data.py imagenet --out data/ ),
# sized for a 2-core CPU: the ImageNet model (ImageClassifier: SMLPNet with its final
# BatchNorm norm3, global average pooling, linear head) with a small arch, 128 px
# crops, batch 16, 20 epochs (300 iterations); top-1 about 0.87 on the 60 val images.
# About one minute of training with OMP_NUM_THREADS=1 on 2 shared CPU cores (torch's
# two intra-op threads are several times slower when the cores are busy):
#   OMP_NUM_THREADS=1 python tools/train.py configs/toy/smlpnet-mini_toy-imagenet.py
_base_ = ['mmpretrain::_base_/default_runtime.py', '../_base_/mmsmlp.py']

data_root = 'data/toy_imagenet/'
classes = ('circle', 'cross', 'rectangle', 'triangle')
img_size = 128

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='SMLPNet',
        arch=dict(embed_dims=32, depths=[1, 1, 2, 1], mlp_ratio=2),
        img_size=img_size,
        out_indices=(3, ),
        drop_path_rate=0.0),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=len(classes),
        in_channels=256,  # 8 * embed_dims
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=.02, bias=0.)))

data_preprocessor = dict(
    num_classes=len(classes),
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    # keep most of the image: the label is the one large shape in it
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.5, 1.0),
         backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=img_size, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]

# CustomDataset with the ImageNet-style lists meta/{train,val}.txt
# ("<class>/<file>.JPEG <label>", relative to the split folder)
train_dataloader = dict(
    batch_size=16,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='CustomDataset',
        data_root=data_root,
        ann_file='meta/train.txt',
        data_prefix='train',
        classes=classes,
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=32,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='CustomDataset',
        data_root=data_root,
        ann_file='meta/val.txt',
        data_prefix='val',
        classes=classes,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
# 4 classes: top-1, and top-2 as a sanity check
val_evaluator = dict(type='Accuracy', topk=(1, 2))
test_evaluator = val_evaluator

max_epochs = 20
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={
            '.mix_height.bias': dict(decay_mult=0.0),
            '.mix_width.bias': dict(decay_mult=0.0),
        }))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=3,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=3,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=10)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=16)

# AtomicCheckpointHook (mmsmlp): CheckpointHook whose checkpoints are never
# half-written and whose old checkpoints are removed only after the new one is complete
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=15),
    checkpoint=dict(type='AtomicCheckpointHook', interval=10, max_keep_ckpts=1))
randomness = dict(seed=0)
