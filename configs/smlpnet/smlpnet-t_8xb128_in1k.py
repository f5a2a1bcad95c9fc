# sMLPNet-T (C=80, depths 2-8-14-2, MLP ratio 3) on ImageNet-1k at 224, with the
# paper's recipe (official code, DeiT lineage), 8 GPUs x 128 images = batch 1024:
#   300 epochs; AdamW, lr 1e-3 at batch 1024 (5e-4 x 1024 / 512), weight decay 0.05,
#   no decay on norms, biases and the axial-mixing biases; cosine schedule to 1e-5
#   after 20 linear warm-up epochs from 1e-6; RandAugment rand-m9-mstd0.5-inc1,
#   random erasing 0.25, repeated augmentation (x3), mixup 0.8, cutmix 1.0, label
#   smoothing 0.1; EMA of the weights (decay 0.99996); drop path per preset
#   (T*, T: 0.0, S: 0.2, B: 0.3); test: resize 256 (short side), center crop 224.
# The data pipelines (RandAugment, erasing, 0.875 test crop) and the schedule come
# from mmpretrain's Swin/DeiT ImageNet files, which are the same recipe.
# Params / FLOPs (mmpretrain's tools/analysis_tools/get_flops.py): 24.12 M / 5.01 G.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
    '../_base_/mmsmlp.py',
]

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='SMLPNet',
        arch='tiny',
        img_size=224,
        # only the last stage: its norm3 is the paper's BatchNorm before pooling
        out_indices=(3, ),
        drop_path_rate=0.0),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=640,  # 8 * C
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=.02, bias=0.),
        cal_acc=False),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]),
)

# data: 8 GPUs x 128; repeated augmentation as in the official (DeiT) code
train_dataloader = dict(
    batch_size=128,
    sampler=dict(_delete_=True, type='RepeatAugSampler', shuffle=True))
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader

# schedule: the base file's LinearLR warm-up (start_factor 1e-3, i.e. from 1e-6 at
# lr 1e-3) for 20 epochs, then cosine annealing to eta_min=1e-5, 300 epochs
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05, eps=1e-8,
                   betas=(0.9, 0.999)),
    paramwise_cfg=dict(
        _delete_=True,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={
            '.mix_height.bias': dict(decay_mult=0.0),
            '.mix_width.bias': dict(decay_mult=0.0),
        }))
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
# lr 1e-3 belongs to batch 1024; --auto-scale-lr rescales it to the real batch
auto_scale_lr = dict(base_batch_size=1024)

# EMA of the weights (official decay 0.99996, i.e. momentum 4e-5 per iteration);
# validation and checkpoints use the EMA weights. The list replaces the one of
# ../_base_/mmsmlp.py, so its hook is repeated here.
custom_hooks = [
    dict(type='EMAHook', momentum=4e-5, priority='ABOVE_NORMAL'),
    dict(type='WeightsOnlyCheckpointHook'),
]
# AtomicCheckpointHook (mmsmlp): CheckpointHook whose checkpoints are never
# half-written and whose old checkpoints are removed only after the new one is complete
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook', interval=1,
                                     max_keep_ckpts=3))
