# UperNet with sMLPNet-T on ADE20K, 512x512 crops, 160k iterations, 4 GPUs x 4 images
# (16 per iteration, as mmseg's Swin 8x2 recipe). Inherits mmseg's Swin-T UperNet
# config: ADE20K data, runtime, UperNet + FCN auxiliary heads with SyncBN, AdamW
# (lr 6e-5, weight decay 0.01) with a 1500-iteration linear warm-up, then poly decay.
_base_ = [
    'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',
    '../_base_/mmsmlp.py'
]
# mmsmlp.datasets registers the CheckSegMap transform
custom_imports = dict(imports=['mmsmlp', 'mmsmlp.datasets'], allow_failed_imports=False)

crop_size = (512, 512)
num_classes = 150
# An ImageNet-1k checkpoint of sMLPNet-T (e.g. from tools/model_converters/
# smlp2mmsmlp.py). Training stops with a clear FileNotFoundError while the file is
# missing; pass --cfg-options model.backbone.init_cfg=None to start from scratch.
pretrained = 'checkpoints/smlpnet-t_in1k.pth'
# SyncBN across GPUs in the backbone and the heads (plain BN in a single process)
norm_cfg = dict(type='SyncBN', requires_grad=True)

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='SMLPNet',
        arch='tiny',
        img_size=224,  # the axial weights of the checkpoint; resized to every input
        out_indices=(0, 1, 2, 3),
        # ImageNet checkpoints only hold the last stage's norm; the UperNet laterals
        # normalise the other outputs themselves
        out_norm=(3, ),
        # 0.2 for T (26 blocks), 0.3 for the deeper S/B (38 blocks): the same rates
        # as our detection configs; the BatchNorm of every sMLP block regularises
        # too, so T needs less than Swin-T's 0.3
        drop_path_rate=0.2,
        norm_cfg=norm_cfg,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    decode_head=dict(
        in_channels=[80, 160, 320, 640], num_classes=num_classes, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=320, num_classes=num_classes, norm_cfg=norm_cfg),
    # sliding 512x512 windows; see *_whole-test.py for whole-image inference
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

# mmseg's ADE20K pipelines with CheckSegMap after LoadAnnotations: a training
# sample whose label map does not fit its image, or holds labels outside the 150
# classes (other than the ignore index 255), is logged and replaced by another;
# in evaluation it is an error naming the file.
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
    # annotations are loaded after Resize: the metric compares at the original size
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='CheckSegMap', num_classes=num_classes, on_invalid='raise'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(batch_size=4, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# AdamW as inherited; no weight decay on any norm layer (backbone and heads) and on
# the axial-mixing biases
optim_wrapper = dict(
    paramwise_cfg=dict(
        _delete_=True,
        norm_decay_mult=0.,
        custom_keys={
            'mix_height.bias': dict(decay_mult=0.),
            'mix_width.bias': dict(decay_mult=0.),
        }))

# 4 GPUs x 4 images; --auto-scale-lr rescales the lr for other batch sizes
auto_scale_lr = dict(enable=False, base_batch_size=16)
# AtomicCheckpointHook (mmsmlp): the base's CheckpointHook, same arguments, whose
# checkpoints are never half-written and whose old checkpoints are removed only
# after the new one is complete
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
