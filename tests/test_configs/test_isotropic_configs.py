"""The configs of the isotropic backbones (ResMLP, S2-MLP): every ImageNet config
builds its mmpretrain classifier and classifies small inputs; the four toy dense
configs build their detector / segmentor (pyramid outputs into FPN / UperNet) and
predict; the recipes hold the values their comments cite."""
import glob
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmsmlp  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RESMLP = {  # config: (arch, channels, patch)
    'resmlp-s12_8xb128_in1k.py': (
        dict(embed_dims=384, num_blocks=12, patch_size=16, mlp_ratio=4,
             layer_scale_init=0.1), 384, 16),
    'resmlp-s24_8xb128_in1k.py': ('s24', 384, 16),
    'resmlp-s36_8xb128_in1k.py': ('s36', 384, 16),
    'resmlp-b24_8xb128_in1k.py': ('b24', 768, 8),
}
S2MLP = {
    's2mlp-wide_8xb128_in1k.py': ('wide', 768),
    's2mlp-deep_8xb128_in1k.py': ('deep', 384),
}
IN1K = sorted(glob.glob(osp.join(ROOT, 'configs', 'resmlp', '*.py')) +
              glob.glob(osp.join(ROOT, 'configs', 's2mlp', '*.py')))
TOY = {  # config: (scope, backbone type, patch)
    'mask-rcnn_resmlp-mini_fpn_toy-coco.py': ('mmdet', 'ResMLP', 16),
    'mask-rcnn_s2mlp-mini_fpn_toy-coco.py': ('mmdet', 'S2MLP', 8),
    'upernet_resmlp-mini_toy-ade20k.py': ('mmseg', 'ResMLP', 16),
    'upernet_s2mlp-mini_toy-ade20k.py': ('mmseg', 'S2MLP', 8),
}


def config(path: str) -> Config:
    return Config.fromfile(path if osp.isabs(path) else osp.join(ROOT, path))


def build(cfg: Config, scope: str):
    import importlib
    models = importlib.import_module(f'{scope}.registry').MODELS
    model_cfg = cfg.model.copy()
    if scope == 'mmpretrain':
        model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    with DefaultScope.overwrite_default_scope(scope):
        return models.build(model_cfg)


def test_configs_found():
    names = {osp.basename(p) for p in IN1K}
    assert names == set(RESMLP) | set(S2MLP)
    for name in TOY:
        assert osp.isfile(osp.join(ROOT, 'configs', 'toy', name)), name


# ------------------------------------------------------------------- ImageNet
@pytest.mark.parametrize('path', IN1K, ids=osp.basename)
def test_in1k_config_builds_and_classifies(path):
    cfg = config(path)
    name = osp.basename(path)
    assert cfg.default_scope == 'mmpretrain'
    assert 'mmsmlp' in cfg.custom_imports['imports']
    assert {'type': 'WeightsOnlyCheckpointHook'} in cfg.custom_hooks
    assert cfg.model.type == 'ImageClassifier'
    assert cfg.model.neck.type == 'GlobalAveragePooling'
    assert cfg.model.head.type == 'LinearClsHead'
    assert cfg.model.head.num_classes == cfg.data_preprocessor.num_classes == 1000
    backbone = cfg.model.backbone
    if name in RESMLP:
        arch, channels, patch = RESMLP[name]
        assert backbone.type == 'ResMLP'
    else:
        (arch, channels), patch = S2MLP[name], 16
        assert backbone.type == 'S2MLP' and backbone.final_norm is False
    assert backbone.arch == arch and backbone.img_size == 224
    assert backbone.get('with_pyramid', False) is False
    assert cfg.model.head.in_channels == channels

    model = build(cfg, 'mmpretrain').eval()
    assert model.backbone.patch_size == patch
    assert model.backbone.num_features == [channels]
    with torch.no_grad():  # small inputs: any size >= 32 works
        logits = model(torch.randn(2, 3, 64, 80), mode='tensor')
    assert logits.shape == (2, 1000) and torch.isfinite(logits).all()


def _common_recipe(cfg, name):
    gpus, per_gpu = map(int, re.search(r'_(\d+)xb(\d+)_', name).groups())
    assert per_gpu == cfg.train_dataloader.batch_size
    assert gpus * per_gpu == 1024 == cfg.auto_scale_lr.base_batch_size
    assert cfg.train_dataloader.sampler.type == 'RepeatAugSampler'
    # mixup 0.8, cutmix 1.0, label smoothing 0.1
    augments = {a.type: a.alpha for a in cfg.model.train_cfg.augments}
    assert augments == {'Mixup': 0.8, 'CutMix': 1.0}
    loss = cfg.model.head.loss
    assert loss.type == 'LabelSmoothLoss' and loss.label_smooth_val == 0.1
    # RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25, bicubic crops
    train = {t.type: t for t in cfg.train_dataloader.dataset.pipeline}
    ra = train['RandAugment']
    assert (ra.policies, ra.num_policies, ra.magnitude_level, ra.magnitude_std,
            ra.total_level) == ('timm_increasing', 2, 9, 0.5, 10)
    assert train['RandomErasing'].erase_prob == 0.25
    assert train['RandomResizedCrop'].scale == 224
    assert train['RandomResizedCrop'].interpolation == 'bicubic'
    # 5 warm-up epochs from lr 1e-6, then cosine to 1e-5
    opt = cfg.optim_wrapper.optimizer
    warmup, cosine = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and warmup.by_epoch and warmup.end == 5
    assert opt.lr * warmup.start_factor == pytest.approx(1e-6)
    assert cosine.type == 'CosineAnnealingLR' and cosine.begin == 5
    assert cosine.end == cfg.train_cfg.max_epochs and cosine.eta_min == 1e-5
    assert opt.eps == 1e-8
    # no weight decay on 1-D parameters, norms and biases (timm's optimiser)
    paramwise = cfg.optim_wrapper.paramwise_cfg
    assert paramwise.norm_decay_mult == paramwise.bias_decay_mult == \
        paramwise.flat_decay_mult == 0
    # raw weights evaluated, as the DeiT code does
    assert 'EMAHook' not in {h.type for h in cfg.custom_hooks}
    return {t.type: t for t in cfg.test_dataloader.dataset.pipeline}


@pytest.mark.parametrize('name', list(RESMLP))
def test_resmlp_recipe(name):
    cfg = config(f'configs/resmlp/{name}')
    test = _common_recipe(cfg, name)
    # LAMB lr 5e-3 (at batch 1024), weight decay 0.2, 400 epochs
    opt = cfg.optim_wrapper.optimizer
    assert opt.type == 'Lamb' and opt.lr == 5e-3 and opt.weight_decay == 0.2
    assert cfg.train_cfg.max_epochs == 400
    assert cfg.model.backbone.drop_path_rate == 0.1
    # test crop ratio 0.9: resize int(224 / 0.9) = 248, crop 224
    assert test['ResizeEdge'].scale == int(224 / 0.9) == 248
    assert test['ResizeEdge'].interpolation == 'bicubic'
    assert test['CenterCrop'].crop_size == 224
    assert cfg.val_dataloader.dataset.pipeline == cfg.test_dataloader.dataset.pipeline


@pytest.mark.parametrize('name', list(S2MLP))
def test_s2mlp_recipe(name):
    cfg = config(f'configs/s2mlp/{name}')
    test = _common_recipe(cfg, name)
    # DeiT: AdamW lr 5e-4 x 1024 / 512, weight decay 0.05, 300 epochs
    opt = cfg.optim_wrapper.optimizer
    assert opt.type == 'AdamW' and opt.lr == 5e-4 * 1024 / 512
    assert opt.weight_decay == 0.05
    assert cfg.train_cfg.max_epochs == 300
    assert cfg.model.backbone.drop_path_rate == 0.1
    assert test['ResizeEdge'].scale == 256 and test['CenterCrop'].crop_size == 224


def _decay_by_name(cfg, scope):
    from mmengine.optim import build_optim_wrapper
    model = build(cfg, scope)
    with DefaultScope.overwrite_default_scope(scope):
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: g['weight_decay'] for g in optim.optimizer.param_groups
            for p in g['params']}


def test_resmlp_no_decay_on_affine_layerscale_and_biases():
    cfg = config('configs/resmlp/resmlp-s12_8xb128_in1k.py')
    cfg.model.backbone.arch = dict(embed_dims=16, num_blocks=2)
    cfg.model.head.in_channels = 16
    decay = _decay_by_name(cfg, 'mmpretrain')
    block = 'backbone.blocks.0.'
    for name in ('norm1.alpha', 'norm1.beta', 'ls1', 'ls2', 'token_mix.bias',
                 'channel_mlp.fc1.bias'):
        assert decay[block + name] == 0, name
    assert decay['backbone.norm.alpha'] == decay['head.fc.bias'] == 0
    for name in ('token_mix.weight', 'channel_mlp.fc1.weight',
                 'channel_mlp.fc2.weight'):
        assert decay[block + name] == 0.2, name
    assert decay['backbone.patch_embed.projection.weight'] == 0.2


def test_s2mlp_no_decay_on_norms_and_biases():
    cfg = config('configs/s2mlp/s2mlp-wide_8xb128_in1k.py')
    cfg.model.backbone.arch = dict(embed_dims=16, num_blocks=2)
    cfg.model.head.in_channels = 16
    decay = _decay_by_name(cfg, 'mmpretrain')
    block = 'backbone.blocks.0.'
    for name in ('norm1.weight', 'norm2.bias', 'spatial_mlp.fc1.bias'):
        assert decay[block + name] == 0, name
    for name in ('spatial_mlp.fc1.weight', 'channel_mlp.fc2.weight'):
        assert decay[block + name] == 0.05, name


def test_resmlp_s12_checkpoint_of_the_preset_loads():
    """The S12 config differs from the ``s12`` preset only in the LayerScale
    init: weights of the preset (e.g. converted from timm) fill it as they are."""
    from mmsmlp.models.backbones import ResMLP
    preset = ResMLP(arch='s12')
    cfg = config('configs/resmlp/resmlp-s12_8xb128_in1k.py')
    backbone = build(cfg, 'mmpretrain').backbone
    assert float(backbone.blocks[0].ls1.detach()[0]) == pytest.approx(0.1)
    result = backbone.load_state_dict(preset.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys


# ------------------------------------------------------------------- toy dense
def _toy(name):
    return config(osp.join('configs', 'toy', name))


@pytest.mark.parametrize('name', [n for n in TOY if TOY[n][0] == 'mmdet'])
def test_toy_det_config_builds_and_predicts(name):
    from mmdet.testing import demo_mm_inputs
    scope, btype, patch = TOY[name]
    cfg = _toy(name)
    assert cfg.default_scope == scope
    backbone = cfg.model.backbone
    assert backbone.type == btype and backbone.with_pyramid is True
    assert backbone.arch.patch_size == patch
    assert '_delete_' not in backbone  # replaced, nothing of SMLPNet left
    assert cfg.model.neck.in_channels == [backbone.arch.embed_dims] * 4
    model = build(cfg, scope).eval()
    assert model.backbone.out_strides == [4, 8, 16, 32]
    # two images of different sizes and aspect ratios, sides not multiples of 32
    data = demo_mm_inputs(2, [[3, 130, 170], [3, 97, 75]], num_classes=4,
                          with_mask=True)
    with torch.no_grad():
        results = model.test_step(data)
        feats = model.extract_feat(torch.randn(1, 3, 96, 160))
    assert len(results) == 2 and 'pred_instances' in results[0]
    assert [tuple(f.shape[-2:]) for f in feats] == [
        (24, 40), (12, 20), (6, 10), (3, 5), (2, 3)]  # FPN: 4 levels + max pool


@pytest.mark.parametrize('name', [n for n in TOY if TOY[n][0] == 'mmseg'])
def test_toy_seg_config_builds_and_predicts(name):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    scope, btype, patch = TOY[name]
    cfg = _toy(name)
    assert cfg.default_scope == scope
    backbone = cfg.model.backbone
    assert backbone.type == btype and backbone.with_pyramid is True
    assert backbone.arch.patch_size == patch
    assert tuple(backbone.img_size) == tuple(cfg.crop_size)
    channels = backbone.arch.embed_dims
    assert cfg.model.decode_head.in_channels == [channels] * 4
    assert cfg.model.auxiliary_head.in_channels == channels
    model = build(cfg, scope).eval()
    num_classes = cfg.model.decode_head.num_classes
    h, w = 77, 110  # sliding windows of the config's 160 crop, padded
    sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                         pad_shape=(h, w), img_path='x.jpg'))
    sample.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, h, w)))
    data = dict(inputs=[torch.randint(0, 256, (3, h, w), dtype=torch.uint8)],
                data_samples=[sample])
    with torch.no_grad():
        out = model.test_step(data)
    assert out[0].pred_sem_seg.shape == (h, w)
    assert out[0].seg_logits.data.shape == (num_classes, h, w)


def test_toy_resmlp_det_trains_one_step():
    """A training step through the data preprocessor: gradients reach the
    token-mixing weights through the resize to the batch's patch grid."""
    from mmdet.testing import demo_mm_inputs
    from mmengine.optim import build_optim_wrapper
    cfg = _toy('mask-rcnn_resmlp-mini_fpn_toy-coco.py')
    model = build(cfg, 'mmdet').train()
    with DefaultScope.overwrite_default_scope('mmdet'):
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
    before = model.backbone.blocks[0].token_mix.weight.detach().clone()
    data = demo_mm_inputs(2, [[3, 160, 128], [3, 128, 192]], num_classes=4,
                          with_mask=True)
    losses = model.train_step(data, optim)
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert 'loss_mask' in losses
    assert not torch.equal(before, model.backbone.blocks[0].token_mix.weight)
