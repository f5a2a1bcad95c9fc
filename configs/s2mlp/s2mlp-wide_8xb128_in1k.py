# S2-MLP-wide (C=768, 12 blocks, patch 16, expansion 4; arXiv 2106.07477) on
# ImageNet-1k at 224, 8 GPUs x 128 images = batch 1024.
#
# Recipe and sources
# ------------------
# The S2-MLP paper trains with the DeiT recipe: it cites DeiT for training, AdamW,
# label smoothing (Inception-v3) and repeated augmentation (Hoffer et al.) among
# its training references. Its hyper-parameter values could not be read offline,
# so they are those of DeiT (facebookresearch/deit main.py defaults, the DeiT
# paper's Table 9): AdamW, lr 5e-4 x batch / 512 = 1e-3 at batch 1024, weight
# decay 0.05 (none on 1-D parameters and biases: timm's optimiser factory), eps
# 1e-8, 300 epochs, 5 warm-up epochs from 1e-6, cosine to 1e-5, RandAugment
# rand-m9-mstd0.5-inc1, random erasing 0.25, mixup 0.8 / cutmix 1.0 (switch 0.5),
# label smoothing 0.1, repeated augmentation, drop path 0.1, bicubic crops, test
# resize 256 / center crop 224 (ratio 0.875). The DeiT script keeps an EMA of the
# weights but evaluates the raw model, so no EMAHook.
# The data pipelines come from mmpretrain's Swin/DeiT ImageNet file, the optimiser
# from mmpretrain's batch-1024 AdamW schedule (the same values); only the warm-up
# length (DeiT: 5 epochs, the base file: 20) and the no-decay keys change.
# Architecture: the paper pools the last block's output without a final norm
# (final_norm=False).
# Params / FLOPs at 224 (tests/test_models/test_backbones/test_s2mlp.py, with the
# final LayerNorm, 1.5 K more parameters): 72.24 M / 14.01 G (paper: 71 M / 14.0 G;
# see the S2MLP docstring for the parameter difference).
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
    '../_base_/mmsmlp.py',
]

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='S2MLP',
        arch='wide',
        img_size=224,
        final_norm=False,
        drop_path_rate=0.1),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=.02, bias=0.),
        cal_acc=False),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]),
)

# data: 8 GPUs x 128, repeated augmentation as in the DeiT code
train_dataloader = dict(
    batch_size=128,
    sampler=dict(_delete_=True, type='RepeatAugSampler', shuffle=True))
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader

# schedule: AdamW lr 1e-3 at batch 1024, weight decay 0.05 except on 1-D parameters
# and biases; 5 warm-up epochs from 1e-6, cosine to 1e-5, 300 epochs
base_lr = 1e-3
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=base_lr, weight_decay=0.05, eps=1e-8,
                   betas=(0.9, 0.999)),
    paramwise_cfg=dict(_delete_=True, norm_decay_mult=0.0, bias_decay_mult=0.0,
                       flat_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / base_lr, by_epoch=True, begin=0,
         end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5, end=300,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
# lr 1e-3 belongs to batch 1024; --auto-scale-lr rescales it to the real batch
auto_scale_lr = dict(base_batch_size=1024)

# AtomicCheckpointHook (mmsmlp): CheckpointHook whose checkpoints are never
# half-written and whose old checkpoints are removed only after the new one is complete
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook', interval=1,
                                     max_keep_ckpts=3))
