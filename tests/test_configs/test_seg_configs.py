"""Every segmentation config in configs/ builds its model and predicts, with sliding
windows and on whole images, on inputs whose sides are not multiples of 32."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import DefaultScope

import mmsmlp  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SEG_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', '*', '*ade20k*.py')))
ADE_CONFIGS = [p for p in SEG_CONFIGS if '/smlpnet/' in p]
TOY_CONFIGS = [p for p in SEG_CONFIGS if '/toy/' in p]
TOY_CONFIG = osp.join(ROOT, 'configs', 'toy', 'upernet_smlpnet-mini_toy-ade20k.py')
T_CONFIG = osp.join(ROOT, 'configs', 'smlpnet',
                    'upernet_smlpnet-t_4xb4-160k_ade20k-512x512.py')
LRD_CONFIG = osp.join(ROOT, 'configs', 'smlpnet',
                      'upernet_smlpnet-t_4xb4-lrd-160k_ade20k-512x512.py')
AXIAL_NO_DECAY = {'mix_height.bias': dict(decay_mult=0.),
                  'mix_width.bias': dict(decay_mult=0.)}


def seg_data(h, w, num_classes):
    """One image (uint8, as the dataloader gives it) and its SegDataSample."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                         pad_shape=(h, w), img_path='x.jpg'))
    sample.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, h, w)))
    return dict(inputs=[torch.randint(0, 256, (3, h, w), dtype=torch.uint8)],
                data_samples=[sample])


def build_model(cfg):
    from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(cfg.model)


def test_configs_found():
    names = [osp.basename(p) for p in SEG_CONFIGS]
    assert len(ADE_CONFIGS) >= 7 and len(TOY_CONFIGS) >= 2, names
    assert TOY_CONFIG in TOY_CONFIGS
    for arch in 'tsb':
        assert f'upernet_smlpnet-{arch}_4xb4-160k_ade20k-512x512.py' in names
    assert 'fpn_smlpnet-t_4xb4-80k_ade20k-512x512.py' in names


def pipeline_types(loader):
    return [t['type'] for t in loader.dataset.pipeline]


@pytest.mark.parametrize('path', SEG_CONFIGS, ids=osp.basename)
def test_seg_config_settings(path):
    from mmengine.registry import MODELS
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmseg'
    backbone = MODELS.get(cfg.model.backbone.type)  # one of mmsmlp's backbones
    assert backbone is not None and backbone.__module__.startswith('mmsmlp.')
    assert cfg.model.pretrained is None
    # CheckSegMap right after LoadAnnotations: skip in training, raise in testing
    for loader, mode in (('train_dataloader', 'skip'), ('val_dataloader', 'raise'),
                         ('test_dataloader', 'raise')):
        types = pipeline_types(cfg[loader])
        i = types.index('LoadAnnotations')
        assert types[i + 1] == 'CheckSegMap', (loader, types)
        check = cfg[loader].dataset.pipeline[i + 1]
        assert check.on_invalid == mode
        assert check.num_classes == cfg.model.decode_head.num_classes
    # AdamW, linear warm-up then poly decay, no decay on norms and axial biases
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.optim_wrapper.paramwise_cfg.norm_decay_mult == 0
    for key, value in AXIAL_NO_DECAY.items():
        assert cfg.optim_wrapper.paramwise_cfg.custom_keys[key] == value
    assert [s.type for s in cfg.param_scheduler] == ['LinearLR', 'PolyLR']
    heads = [cfg.model.decode_head] + ([cfg.model.auxiliary_head]
                                       if cfg.model.get('auxiliary_head') else [])
    if '/toy/' in path:
        assert cfg.train_dataloader.dataset.type == 'BaseSegDataset'
        assert cfg.train_dataloader.dataset.reduce_zero_label
        assert len(cfg.train_dataloader.dataset.metainfo.classes) == 5
        # one CPU process: no SyncBN (ResMLP / S2-MLP toys have no BatchNorm)
        assert cfg.model.backbone.get('norm_cfg', dict(type='BN'))['type'] == 'BN'
        assert all(h.norm_cfg.type == 'BN' for h in heads)
    else:
        assert cfg.model.decode_head.num_classes == 150
        assert cfg.model.backbone.norm_cfg.type == 'SyncBN'
        assert all(h.norm_cfg.type == 'SyncBN' for h in heads)
        assert cfg.model.backbone.out_norm == (3, )
        init = cfg.model.backbone.init_cfg
        assert init.type == 'Pretrained' and init.prefix == 'backbone.'
        assert init.checkpoint.startswith('checkpoints/smlpnet-')
        assert cfg.train_dataloader.batch_size == 4  # the 4xb4 of the names
        if 'whole-test' in path:
            assert cfg.model.test_cfg == dict(mode='whole')
        else:
            assert cfg.model.test_cfg == dict(mode='slide', crop_size=(512, 512),
                                              stride=(341, 341))
    if 'amp' in osp.basename(path):
        assert cfg.optim_wrapper.type == 'AmpOptimWrapper'


@pytest.mark.parametrize('path', SEG_CONFIGS, ids=osp.basename)
def test_seg_config_builds_and_predicts(path):
    """Each config's model with its own test_cfg (sides not multiples of 32)."""
    cfg = Config.fromfile(path)
    num_classes = cfg.model.decode_head.num_classes
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model.test_step(seg_data(77, 110, num_classes))
    assert out[0].pred_sem_seg.shape == (77, 110)
    assert out[0].seg_logits.data.shape == (num_classes, 77, 110)
    assert int(out[0].pred_sem_seg.data.max()) < num_classes


@pytest.mark.parametrize('path', [T_CONFIG, TOY_CONFIG], ids=osp.basename)
def test_slide_and_whole_inference(path):
    """Sliding windows (several, overlapping) and whole images of varying sizes:
    the backbone resizes its axial weights to every token grid."""
    cfg = Config.fromfile(path)
    if path == T_CONFIG:  # narrower, for speed: the inference code is the same
        cfg.model.backbone.arch = dict(embed_dims=16, depths=[1, 1, 2, 1])
        cfg.model.decode_head.in_channels = [16, 32, 64, 128]
        cfg.model.decode_head.channels = 32
        cfg.model.auxiliary_head.in_channels = 64
    num_classes = cfg.model.decode_head.num_classes
    model = build_model(cfg).eval()
    test_cfgs = [
        ConfigDict(mode='slide', crop_size=(64, 64), stride=(43, 43)),  # 3x4 windows
        ConfigDict(mode='whole'),
    ]
    with torch.no_grad():
        for test_cfg in test_cfgs:
            model.test_cfg = test_cfg
            for h, w in ((100, 150), (77, 203)):
                out = model.test_step(seg_data(h, w, num_classes))
                assert out[0].pred_sem_seg.shape == (h, w), test_cfg
                assert out[0].seg_logits.data.shape == (num_classes, h, w)


def test_missing_pretrained_checkpoint_is_a_clear_error():
    cfg = Config.fromfile(T_CONFIG)
    checkpoint = cfg.model.backbone.init_cfg.checkpoint
    if osp.exists(osp.join(ROOT, checkpoint)) or osp.exists(checkpoint):
        pytest.skip(f'{checkpoint} exists')
    cfg.model.backbone.arch = dict(embed_dims=8, depths=[1, 1, 1, 1])
    cfg.model.decode_head.in_channels = [8, 16, 32, 64]
    cfg.model.auxiliary_head.in_channels = 32
    model = build_model(cfg)
    with pytest.raises(FileNotFoundError, match='smlpnet-t_in1k.pth'):
        model.backbone.init_weights()


def test_seg_config_trains_one_step():
    """A training step through the data preprocessor (SyncBN acts as BN in one
    process), with the config's optimizer settings."""
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(T_CONFIG)
    cfg.model.backbone.arch = dict(embed_dims=16, depths=[1, 1, 1, 1])
    cfg.model.decode_head.in_channels = [16, 32, 64, 128]
    cfg.model.decode_head.channels = 32
    cfg.model.auxiliary_head.in_channels = 64
    cfg.model.data_preprocessor.size = (96, 96)
    model = build_model(cfg).train()
    with DefaultScope.overwrite_default_scope('mmseg'):
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    data = seg_data(90, 70, 150)  # padded to the 96x96 crop size
    for key in ('inputs', 'data_samples'):
        data[key] += seg_data(96, 96, 150)[key]
    losses = model.train_step(data, optim_wrapper)
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses)
    assert all(torch.isfinite(v).all() for v in losses.values())


def test_layer_decay_config_param_groups():
    """The lrd config: lr decays toward the stem, the heads keep the base lr, no
    weight decay on norms (backbone and heads) and axial biases."""
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(LRD_CONFIG)
    model = build_model(cfg)
    with DefaultScope.overwrite_default_scope('mmseg'):
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {names[id(g['params'][0])]: g for g in optim_wrapper.param_groups
              if id(g['params'][0]) in names}
    assert len(groups) == len(names)
    base_lr = cfg.optim_wrapper.optimizer.lr
    rate = cfg.optim_wrapper.paramwise_cfg.layer_decay_rate
    assert rate < 1
    num_layers = sum(model.backbone.depths) + 2

    def lr(name):
        return groups[name]['lr']

    stem = 'backbone.patch_embed.projection.weight'
    assert lr(stem) == pytest.approx(base_lr * rate**(num_layers - 1))
    per_block = [lr(f'backbone.stages.{i}.blocks.{j}.channel_mlp.fc1.weight')
                 for i, d in enumerate(model.backbone.depths) for j in range(d)]
    assert lr(stem) < per_block[0]
    assert all(a < b for a, b in zip(per_block, per_block[1:]))
    assert per_block[-1] < lr('backbone.norm3.weight') == pytest.approx(base_lr)
    assert lr('decode_head.conv_seg.weight') == pytest.approx(base_lr)
    assert lr('auxiliary_head.conv_seg.weight') == pytest.approx(base_lr)

    wd = cfg.optim_wrapper.optimizer.weight_decay
    for name, group in groups.items():
        no_decay = ('norm' in name.split('.')[-2] or '.bn.' in name
                    or name.endswith(('mix_height.bias', 'mix_width.bias')))
        assert group['weight_decay'] == (0. if no_decay else wd), name


def test_toy_config_with_the_inference_api(tmp_path):
    """mmseg's inference_model drops LoadAnnotations from the test pipeline:
    CheckSegMap lets samples without a label map through."""
    import cv2
    import numpy as np
    from mmseg.apis import inference_model, init_model
    img = str(tmp_path / 'x.jpg')
    cv2.imwrite(img, np.random.default_rng(0).integers(0, 255, (90, 130, 3), np.uint8))
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = init_model(TOY_CONFIG, device='cpu')
        result = inference_model(model, img)
    assert result.pred_sem_seg.shape == (90, 130)
