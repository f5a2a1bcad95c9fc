# Fine-tune sMLPNet-T at 384 from its 224 ImageNet-1k checkpoint, 8 GPUs x 64
# images = batch 512, 30 epochs (the DeiT fine-tuning recipe the official code
# follows: AdamW lr 5e-6 at batch 512, weight decay 1e-8, 5 warm-up epochs from
# 1e-6, then constant; same augmentation, mixup/cutmix, label smoothing and EMA as
# the 224 training). Test: resize the short side to 384, center crop 384 (crop
# ratio 1.0).
#
# `load_from` restores the whole classifier (backbone and head). The axial
# token-mixing weights of the 224 checkpoint (grids 56/28/14/7) are resized on load
# to the grids of img_size=384 (96/48/24/12), see mmsmlp/models/utils/token_mixing.py;
# everything else is loaded as is. Make the checkpoint with
# configs/smlpnet/smlpnet-t_8xb128_in1k.py or tools/model_converters/smlp2mmsmlp.py.
_base_ = './smlpnet-t_8xb128_in1k.py'

load_from = 'checkpoints/smlpnet-t_in1k.pth'

model = dict(backbone=dict(img_size=384))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=384, backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandAugment',  # rand-m9-mstd0.5-inc1
         policies='timm_increasing',
         num_policies=2,
         total_level=10,
         magnitude_level=9,
         magnitude_std=0.5,
         hparams=dict(pad_val=[round(x) for x in _base_.bgr_mean],
                      interpolation='bicubic')),
    dict(type='RandomErasing',
         erase_prob=0.25,
         mode='rand',
         min_area_ratio=0.02,
         max_area_ratio=1 / 3,
         fill_color=_base_.bgr_mean,
         fill_std=_base_.bgr_std),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=384, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=384),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=64, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=64, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(lr=5e-6, weight_decay=1e-8))
param_scheduler = [
    # 1e-6 -> 5e-6 over 5 epochs, updated every iteration; constant afterwards
    dict(type='LinearLR', start_factor=0.2, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=30, val_interval=1)
auto_scale_lr = dict(base_batch_size=512)
