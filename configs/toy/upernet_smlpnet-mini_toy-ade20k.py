# UperNet with a small sMLPNet on the toy ADE20K set (tools/misc/make_toy_data.py
# ade20k), sized for a 2-core CPU:
#   python tools/misc/make_toy_data.py ade20k --out data/
#   python tools/train.py configs/toy/upernet_smlpnet-mini_toy-ade20k.py
#   python tools/test.py configs/toy/upernet_smlpnet-mini_toy-ade20k.py \
#       work_dirs/upernet_smlpnet-mini_toy-ade20k/iter_1000.pth --show-dir vis
# Tests with sliding windows; configs/toy/upernet_smlpnet-mini_toy-ade20k_whole.py
# tests the same checkpoint on whole images. Measured on 2 CPU cores: 1000
# iterations in ~4 min (test ~20 s), mIoU 77.2 (slide) / 75.0 (whole). On a
# machine shared with other jobs, OMP_NUM_THREADS=1 avoids torch's threads
# spinning against each other (several times slower otherwise).
_base_ = [
    'mmseg::_base_/models/upernet_swin.py', 'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py', '../_base_/mmsmlp.py'
]
# mmsmlp.datasets registers the CheckSegMap transform
custom_imports = dict(imports=['mmsmlp', 'mmsmlp.datasets'], allow_failed_imports=False)

data_root = 'data/toy_ade20k'
# label PNG value v is class v - 1 (reduce_zero_label: value 0 is unlabelled)
classes = ('background', 'circle', 'cross', 'rectangle', 'triangle')
metainfo = dict(
    classes=classes,
    palette=[(120, 120, 120), (220, 50, 50), (235, 200, 40), (50, 90, 225),
             (40, 170, 70)])
num_classes = len(classes)
crop_size = (160, 160)
channels = 64  # UperNet width (512 in the ADE20K configs)
norm_cfg = dict(type='BN', requires_grad=True)  # one CPU process: no SyncBN

model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='SMLPNet',
        arch=dict(embed_dims=32, depths=[1, 1, 2, 1], mlp_ratio=2),
        img_size=crop_size,  # reference grid of the axial weights: the crop
        out_indices=(0, 1, 2, 3),
        norm_cfg=norm_cfg),  # the backbone's own init: trained from scratch
    decode_head=dict(
        in_channels=[32, 64, 128, 256], channels=channels, num_classes=num_classes,
        norm_cfg=norm_cfg,
        # The shapes cover ~5 % of the pixels and the triangles only ~1 %: with
        # cross-entropy alone the head's features for the rarest classes die out
        # early (triangle IoU stays 0 after 1000 iterations). The Lovasz-softmax
        # loss optimises the per-class IoU directly and fixes that.
        loss_decode=[
            dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            dict(type='LovaszLoss', loss_type='multi_class', per_image=False,
                 reduction='none', loss_weight=1.0)
        ]),
    auxiliary_head=dict(
        in_channels=128, channels=32, num_classes=num_classes, norm_cfg=norm_cfg),
    # sliding windows of the training crop over the test image (resized to a long
    # side of 256)
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(106, 106)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),  # reduce_zero_label comes from the dataset
    dict(type='CheckSegMap', num_classes=num_classes, on_invalid='skip'),
    dict(type='RandomResize', scale=(256, 256), ratio_range=(0.5, 1.5),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 256), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='CheckSegMap', num_classes=num_classes, on_invalid='raise'),
    dict(type='PackSegInputs')
]
dataset_cfg = dict(
    type='BaseSegDataset',  # ADE20KDataset only accepts the 150 ADE20K classes
    data_root=data_root,
    metainfo=metainfo,
    reduce_zero_label=True,
    img_suffix='.jpg',
    seg_map_suffix='.png')
train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(
        **dataset_cfg,
        data_prefix=dict(img_path='images/training',
                         seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(
        **dataset_cfg,
        data_prefix=dict(img_path='images/validation',
                         seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

max_iters = 1000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# AdamW with a linear warm-up and poly decay, no weight decay on norms and on the
# axial-mixing biases; a high lr: the model starts from scratch
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        custom_keys={
            'mix_height.bias': dict(decay_mult=0.),
            'mix_width.bias': dict(decay_mult=0.),
        }),
    clip_grad=dict(max_norm=10.))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=50,
         end=max_iters)
]
# AtomicCheckpointHook (mmsmlp): CheckpointHook whose checkpoints are never
# half-written and whose old checkpoints are removed only after the new one is complete
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='AtomicCheckpointHook', by_epoch=False, interval=max_iters,
                    max_keep_ckpts=2),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
env_cfg = dict(cudnn_benchmark=False)
randomness = dict(seed=0)
auto_scale_lr = dict(enable=False, base_batch_size=4)
