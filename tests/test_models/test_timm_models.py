"""sMLPNet as timm models (mmsmlp/models/timm_models.py): creation without any
network access, timm's feature API, and weights interchangeable with mmpretrain."""
import os.path as osp
import socket

import pytest
import timm
import torch
from mmengine.analysis import parameter_count
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmsmlp  # noqa: F401
import mmsmlp.models.timm_models as timm_models
from mmsmlp.models.backbones.smlpnet import SMLPNet
from mmsmlp.models.timm_models import (NoPretrainedWeightsError, SMLPNetTimm,
                                       checkpoint_filter_fn)
from mmsmlp.testing import randomise_weights

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
T_CONFIG = osp.join(ROOT, 'configs', 'smlpnet', 'smlpnet-t_8xb128_in1k.py')
SMALL_ARCH = dict(embed_dims=16, depths=[1, 1, 2, 1], mlp_ratio=2)

# timm name: (SMLPNet arch, C, params in M with the 1000-class head)
PRESETS = {
    'smlpnet_tiny_a2': ('tiny-a2', 80, 19.18),
    'smlpnet_tiny': ('tiny', 80, 24.12),
    'smlpnet_small': ('small', 96, 48.56),
    'smlpnet_base': ('base', 112, 65.88),
}


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f'network access attempted: {args}')

    monkeypatch.setattr(socket.socket, 'connect', refuse)
    monkeypatch.setattr(socket, 'create_connection', refuse)
    monkeypatch.setattr(socket, 'getaddrinfo', refuse)


def _mmpretrain_classifier(cfg_model):
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(cfg_model)


def test_registered_names():
    assert set(PRESETS) <= set(timm.list_models('smlpnet*'))
    assert set(timm_models.TIMM_ARCHS) == set(PRESETS)


@pytest.mark.parametrize('name', list(PRESETS))
def test_create_each_size_without_network(name, no_network):
    arch, channels, params_m = PRESETS[name]
    model = timm.create_model(name)
    assert isinstance(model, SMLPNetTimm)
    assert isinstance(model.backbone, SMLPNet)  # the mmsmlp network itself
    assert model.backbone.out_indices == (3, )
    assert model.num_classes == 1000
    assert model.num_features == model.head_hidden_size == 8 * channels
    assert abs(parameter_count(model)[''] / 1e6 - params_m) < 0.01
    cfg = model.pretrained_cfg
    assert model.default_cfg is cfg
    assert not cfg.get('url') and not cfg.get('hf_hub_id') and not cfg.get('file')
    assert cfg['input_size'] == (3, 224, 224) and cfg['crop_pct'] == 0.875
    assert cfg['classifier'] == 'head.fc'
    assert model.get_submodule(cfg['first_conv']).weight.shape[1] == 3


def test_forward_head_classifier_api(no_network):
    model = timm.create_model('smlpnet_tiny', arch=SMALL_ARCH, num_classes=7).eval()
    x = torch.randn(2, 3, 96, 80)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, 128, 3, 3)
        assert model.forward_head(feats, pre_logits=True).shape == (2, 128)
        logits = model(x)
    assert logits.shape == (2, 7)
    assert torch.equal(logits, model.forward_head(feats))
    assert model.get_classifier() is model.head.fc
    assert model.get_classifier().out_features == 7

    model.reset_classifier(3)
    assert model.num_classes == 3 and model.get_classifier().out_features == 3
    model.reset_classifier(0)
    with torch.no_grad():
        assert model(x).shape == (2, 128)
    assert not any(k.startswith('head.fc') for k in model.state_dict())

    model.set_grad_checkpointing(True)
    assert all(b.with_cp for s in model.backbone.stages for b in s.blocks)
    assert model.group_matcher()['stem'] == r'^backbone\.patch_embed'


def test_features_only_gives_the_pyramid(no_network):
    model = timm.create_model('smlpnet_tiny', features_only=True).eval()
    info = model.feature_info
    assert info.channels() == [80, 160, 320, 640]
    assert info.reduction() == [4, 8, 16, 32]
    assert info.module_name() == [f'backbone.stages.{i}' for i in range(4)]
    x = torch.randn(1, 3, 100, 130)  # sides not multiples of 32
    with torch.no_grad():
        feats = model(x)
    assert [tuple(f.shape) for f in feats] == [(1, 80, 25, 33), (1, 160, 13, 17),
                                               (1, 320, 7, 9), (1, 640, 4, 5)]
    # no classifier and no final norm are left in a feature extractor
    assert not any(k.startswith('model.head.fc') for k in model.state_dict())
    assert not any('norm3' in k for k in model.state_dict())


def test_features_only_out_indices(no_network):
    model = timm.create_model('smlpnet_small', arch=SMALL_ARCH, features_only=True,
                              out_indices=(1, -2)).eval()
    assert model.feature_info.channels() == [32, 64]
    assert model.feature_info.reduction() == [8, 16]
    assert len(model.model.backbone.stages) == 3  # the last stage is pruned
    with torch.no_grad():
        feats = model(torch.randn(2, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == [(2, 32, 8, 8), (2, 64, 4, 4)]


def test_forward_intermediates_matches_forward_features():
    model = randomise_weights(timm.create_model('smlpnet_tiny', arch=SMALL_ARCH),
                              scale=0.05).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        final, inter = model.forward_intermediates(x)
        assert torch.allclose(final, model.forward_features(x))
        assert len(inter) == 4
        normed = model.forward_intermediates(x, indices=1, norm=True,
                                             intermediates_only=True)
        assert torch.allclose(normed[0], final)
        nhwc = model.forward_intermediates(x, indices=[0], output_fmt='NHWC',
                                           intermediates_only=True)
        assert torch.equal(nhwc[0], inter[0].permute(0, 2, 3, 1))


def test_pretrained_true_raises_a_clear_error(no_network):
    with pytest.raises(NoPretrainedWeightsError) as err:
        timm.create_model('smlpnet_tiny', pretrained=True)
    msg = str(err.value)
    assert 'no pretrained' in msg and 'checkpoint_path=' in msg
    assert 'tools/model_converters/smlp2mmsmlp.py' in msg


def test_equal_to_the_mmpretrain_classifier(tmp_path, no_network):
    """Same weights, same logits: the timm model and the ImageClassifier of
    configs/smlpnet/smlpnet-t_8xb128_in1k.py, through a saved checkpoint."""
    cfg = Config.fromfile(T_CONFIG)
    classifier = randomise_weights(_mmpretrain_classifier(cfg.model),
                                   scale=0.05).eval()
    ckpt = str(tmp_path / 'smlpnet-t_in1k.pth')
    torch.save({'meta': {}, 'state_dict': classifier.state_dict()}, ckpt)

    # timm's own loader, strict: the key layouts are identical
    model = timm.create_model('smlpnet_tiny', checkpoint_path=ckpt).eval()
    assert set(model.state_dict()) == set(classifier.state_dict())
    x = torch.randn(2, 3, 128, 160)  # not the reference size: axial weights resized
    with torch.no_grad():
        expected = classifier(x, mode='tensor')
        got = model(x)
    assert got.shape == (2, 1000)
    assert (got - expected).abs().max() < 1e-5

    # and back: a timm state dict loads into the mmpretrain classifier as it is
    other = _mmpretrain_classifier(cfg.model).eval()
    other.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        assert (other(x, mode='tensor') - expected).abs().max() < 1e-5

    # pretrained=True with a local file goes through checkpoint_filter_fn and
    # adapts the classifier to another number of classes
    tuned = timm.create_model('smlpnet_tiny', pretrained=True, num_classes=10,
                              pretrained_cfg_overlay=dict(file=ckpt)).eval()
    assert tuned.get_classifier().out_features == 10
    with torch.no_grad():
        feats = classifier.extract_feat(x)[-1]
        assert (tuned.forward_head(tuned.forward_features(x), pre_logits=True) -
                feats).abs().max() < 1e-5


def test_checkpoint_filter_fn():
    model = timm.create_model('smlpnet_tiny', arch=SMALL_ARCH, num_classes=0)
    backbone_sd = model.backbone.state_dict()
    ddp = {'module.backbone.' + k: v for k, v in backbone_sd.items()}
    ddp['module.head.fc.weight'] = torch.zeros(1000, 128)
    ddp['module.head.fc.bias'] = torch.zeros(1000)
    ddp['data_preprocessor.mean'] = torch.zeros(3)
    out = checkpoint_filter_fn({'state_dict': ddp}, model)
    assert set(out) == set(model.state_dict())  # head and preprocessor dropped
    # a bare backbone state dict
    assert set(checkpoint_filter_fn(backbone_sd, model)) == set(model.state_dict())
    with pytest.raises(ValueError, match='smlp2mmsmlp'):
        checkpoint_filter_fn({'to_patch_embedding.0.weight': torch.zeros(1)}, model)
    with pytest.raises(ValueError, match='no sMLPNet weights'):
        checkpoint_filter_fn({'fc.weight': torch.zeros(1)}, model)


def test_384_model_from_a_224_checkpoint(tmp_path):
    small = randomise_weights(timm.create_model('smlpnet_tiny', arch=SMALL_ARCH),
                              scale=0.05).eval()
    ckpt = str(tmp_path / 'small224.pth')
    torch.save({'state_dict': small.state_dict()}, ckpt)
    big = timm.create_model('smlpnet_tiny', arch=SMALL_ARCH, img_size=384,
                            checkpoint_path=ckpt).eval()
    mix = big.backbone.stages[0].blocks[0].sparse_mlp.mix_width
    assert mix.weight.shape == (96, 96)
    with torch.no_grad():
        assert big(torch.randn(1, 3, 384, 384)).shape == (1, 1000)


def test_wrong_arguments_are_refused():
    with pytest.raises(TypeError, match='features_only'):
        SMLPNetTimm(arch=SMALL_ARCH, out_indices=(0, 1))
    model = SMLPNetTimm(arch=SMALL_ARCH)
    with pytest.raises(ValueError, match='output_fmt'):
        model.forward_intermediates(torch.randn(1, 3, 64, 64), output_fmt='NLC')


def test_device_and_dtype_factory_arguments():
    """timm's ``create_model(..., device=, dtype=)``: every tensor where asked
    (the meta device allocates nothing and still gives the output shapes)."""
    meta = timm.create_model('smlpnet_tiny', device='meta', num_classes=5)
    tensors = dict(meta.named_parameters(), **dict(meta.named_buffers()))
    assert {t.device.type for t in tensors.values()} == {'meta'}
    out = meta(torch.empty(2, 3, 100, 130, device='meta'))
    assert out.device.type == 'meta' and out.shape == (2, 5)

    model = timm.create_model('smlpnet_tiny', arch=SMALL_ARCH, dtype=torch.float64)
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    assert model.backbone.norm3.running_var.dtype == torch.float64
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 64, 64, dtype=torch.float64)).dtype \
            == torch.float64
    # a new classifier goes where the model is, also from a head without one
    model.reset_classifier(0)
    model.reset_classifier(4)
    assert model.get_classifier().weight.dtype == torch.float64

    with pytest.raises(TypeError, match='floating-point torch.dtype'):
        SMLPNetTimm(arch=SMALL_ARCH, dtype=torch.int64)
