"""The classification configs: every one builds its mmpretrain model and runs a
forward; the ImageNet configs hold the paper's recipe; the 384 fine-tuning config
starts from a 224 checkpoint whose axial weights are resized on load."""
import glob
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmsmlp  # noqa: F401
from mmsmlp.models.utils.token_mixing import resize_token_mixing

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
IN1K_224 = {  # config: (arch, drop path, channels)
    'smlpnet-t-a2_8xb128_in1k.py': ('tiny-a2', 0.0, 80),
    'smlpnet-t_8xb128_in1k.py': ('tiny', 0.0, 80),
    'smlpnet-s_8xb128_in1k.py': ('small', 0.2, 96),
    'smlpnet-b_8xb128_in1k.py': ('base', 0.3, 112),
}
FT_384 = 'smlpnet-t_8xb64_in1k-384px.py'
TOY = osp.join(ROOT, 'configs', 'toy', 'smlpnet-mini_toy-imagenet.py')
CLS_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'smlpnet', '*_in1k*.py'))) \
    + [TOY]


def cfg_of(name: str) -> Config:
    return Config.fromfile(osp.join(ROOT, 'configs', 'smlpnet', name))


def build_model(cfg: Config):
    from mmpretrain.registry import MODELS
    model_cfg = cfg.model.copy()
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(model_cfg)


def test_configs_found():
    names = {osp.basename(p) for p in CLS_CONFIGS}
    assert set(IN1K_224) | {FT_384} <= names
    assert osp.isfile(TOY)


@pytest.mark.parametrize('path', CLS_CONFIGS, ids=osp.basename)
def test_cls_config_builds_and_classifies(path):
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmpretrain'
    assert 'mmsmlp' in cfg.custom_imports['imports']
    assert cfg.model.type == 'ImageClassifier'
    assert cfg.model.backbone.type == 'SMLPNet'
    assert tuple(cfg.model.backbone.out_indices) == (3, )
    assert cfg.model.neck.type == 'GlobalAveragePooling'
    assert cfg.model.head.type == 'LinearClsHead'
    model = build_model(cfg).eval()
    size = cfg.model.backbone.img_size
    crop = [t for t in cfg.test_dataloader.dataset.pipeline
            if t.type == 'CenterCrop'][0].crop_size
    assert crop == size  # the test crop is the reference size of the axial weights
    num_classes = cfg.model.head.num_classes
    assert cfg.data_preprocessor.num_classes == num_classes
    with torch.no_grad():
        logits = model(torch.randn(1, 3, size, size), mode='tensor')
    assert logits.shape == (1, num_classes)
    # norm3 is the backbone's final BatchNorm (the paper's BN before pooling)
    assert isinstance(model.backbone.norm3, torch.nn.BatchNorm2d)


@pytest.mark.parametrize('name', list(IN1K_224))
def test_in1k_recipe(name):
    cfg = cfg_of(name)
    arch, drop_path, channels = IN1K_224[name]
    backbone = cfg.model.backbone
    assert backbone.arch == arch and backbone.drop_path_rate == drop_path
    assert backbone.img_size == 224
    assert cfg.model.head.in_channels == 8 * channels
    assert cfg.model.head.num_classes == 1000

    # batch: 8 GPUs x 128 = 1024, the batch of lr 1e-3
    gpus, per_gpu = map(int, re.search(r'_(\d+)xb(\d+)_', name).groups())
    assert per_gpu == cfg.train_dataloader.batch_size
    assert gpus * per_gpu == 1024 == cfg.auto_scale_lr.base_batch_size
    assert cfg.train_dataloader.sampler.type == 'RepeatAugSampler'

    # 300 epochs, AdamW lr 1e-3, wd 0.05
    assert cfg.train_cfg.max_epochs == 300
    opt = cfg.optim_wrapper.optimizer
    assert opt.type == 'AdamW' and opt.lr == 1e-3 and opt.weight_decay == 0.05
    # 20 warm-up epochs from 1e-6, then cosine to 1e-5
    warmup, cosine = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and warmup.end == 20 and warmup.by_epoch
    assert opt.lr * warmup.start_factor == pytest.approx(1e-6)
    assert cosine.type == 'CosineAnnealingLR' and cosine.begin == 20
    assert cosine.eta_min == 1e-5

    # mixup 0.8, cutmix 1.0, label smoothing 0.1
    augments = {a.type: a.alpha for a in cfg.model.train_cfg.augments}
    assert augments == {'Mixup': 0.8, 'CutMix': 1.0}
    loss = cfg.model.head.loss
    assert loss.type == 'LabelSmoothLoss' and loss.label_smooth_val == 0.1

    # RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25
    train = {t.type: t for t in cfg.train_dataloader.dataset.pipeline}
    ra = train['RandAugment']
    assert (ra.policies, ra.num_policies, ra.magnitude_level, ra.magnitude_std,
            ra.total_level) == ('timm_increasing', 2, 9, 0.5, 10)
    assert train['RandomErasing'].erase_prob == 0.25
    assert train['RandomResizedCrop'].scale == 224
    # test: resize 256, center crop 224 (ratio 0.875)
    test = {t.type: t for t in cfg.test_dataloader.dataset.pipeline}
    assert test['ResizeEdge'].scale == 256 and test['ResizeEdge'].edge == 'short'
    assert 224 / test['ResizeEdge'].scale == 0.875
    assert test['CenterCrop'].crop_size == 224

    # EMA (and checkpoints that load with weights_only=True)
    hooks = {h.type: h for h in cfg.custom_hooks}
    assert 'EMAHook' in hooks and hooks['EMAHook'].momentum == 4e-5
    assert 'WeightsOnlyCheckpointHook' in hooks


def _decay_by_name(model, optim_wrapper_cfg):
    from mmengine.optim import build_optim_wrapper
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        optim = build_optim_wrapper(model, optim_wrapper_cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: g['weight_decay'] for g in optim.optimizer.param_groups
            for p in g['params']}


def test_no_decay_on_norms_biases_and_axial_biases():
    cfg = cfg_of('smlpnet-t_8xb128_in1k.py')
    cfg.model.backbone.arch = dict(embed_dims=16, depths=[1, 1, 1, 1])
    cfg.model.head.in_channels = 128
    decay = _decay_by_name(build_model(cfg), cfg.optim_wrapper)
    block = 'backbone.stages.0.blocks.0.'
    for name in ('sparse_mlp.mix_height.bias', 'sparse_mlp.mix_width.bias',
                 'local_norm.weight', 'global_norm.bias', 'channel_norm.weight',
                 'channel_norm.bias', 'channel_mlp.fc1.bias'):
        assert decay[block + name] == 0, name
    assert decay['backbone.norm3.weight'] == decay['head.fc.bias'] == 0
    for name in ('sparse_mlp.mix_height.weight', 'sparse_mlp.fuse.weight',
                 'channel_mlp.fc1.weight', 'local_mix.weight'):
        assert decay[block + name] == 0.05, name
    assert decay['head.fc.weight'] == decay['backbone.patch_embed.projection.weight'] \
        == 0.05


def test_384_finetune_recipe():
    cfg = cfg_of(FT_384)
    assert cfg.model.backbone.img_size == 384 and cfg.model.backbone.arch == 'tiny'
    assert cfg.load_from == 'checkpoints/smlpnet-t_in1k.pth'
    assert cfg.train_cfg.max_epochs == 30
    assert cfg.optim_wrapper.optimizer.lr <= 1e-5
    assert cfg.train_dataloader.batch_size == 64
    assert cfg.auto_scale_lr.base_batch_size == 8 * 64
    train = {t.type: t for t in cfg.train_dataloader.dataset.pipeline}
    assert train['RandomResizedCrop'].scale == 384 and 'RandAugment' in train
    test = {t.type: t for t in cfg.test_dataloader.dataset.pipeline}
    assert test['ResizeEdge'].scale == 384 and test['CenterCrop'].crop_size == 384
    assert 'EMAHook' in {h.type for h in cfg.custom_hooks}


def test_384_config_loads_a_224_checkpoint(tmp_path):
    """What the Runner does with ``load_from``: a 224 checkpoint of sMLPNet-T fills
    the 384 model, axial weights resized (grids 56/28/14/7 -> 96/48/24/12) and the
    rest (head included) as they are."""
    from mmengine.runner import load_checkpoint
    model224 = build_model(cfg_of('smlpnet-t_8xb128_in1k.py'))
    with torch.no_grad():
        for p in model224.parameters():
            p.normal_(0, 0.02)
    state224 = model224.state_dict()
    ckpt = str(tmp_path / 'smlpnet-t_in1k.pth')
    torch.save({'meta': {}, 'state_dict': state224}, ckpt)

    cfg = cfg_of(FT_384)
    model384 = build_model(cfg).eval()
    load_checkpoint(model384, ckpt, map_location='cpu', strict=True)
    state384 = model384.state_dict()
    key = 'backbone.stages.{}.blocks.0.sparse_mlp.mix_{}.{}'
    for stage, (old, new) in enumerate([(56, 96), (28, 48), (14, 24), (7, 12)]):
        for axis in ('height', 'width'):
            w, b = state224[key.format(stage, axis, 'weight')], \
                state224[key.format(stage, axis, 'bias')]
            assert state384[key.format(stage, axis, 'weight')].shape == (new, new)
            ew, eb = resize_token_mixing(w, b, (old, ), (new, ))
            torch.testing.assert_close(state384[key.format(stage, axis, 'weight')], ew)
            torch.testing.assert_close(state384[key.format(stage, axis, 'bias')], eb)
    for name in ('head.fc.weight', 'backbone.norm3.weight',
                 'backbone.stages.2.blocks.3.channel_mlp.fc1.weight'):
        assert torch.equal(state384[name], state224[name])
    with torch.no_grad():
        assert model384(torch.randn(1, 3, 384, 384), mode='tensor').shape == (1, 1000)
