"""bf16 autocast forward of every backbone at 1333x800 on the CPU: no NaN or Inf
(fp16 needs a GPU: see docs/benchmarks.md)."""
import pytest
import torch

from mmsmlp.models import ResMLP, S2MLP, SMLPNet

BACKBONES = {
    'SMLPNet-tiny': lambda: SMLPNet('tiny'),
    'ResMLP': lambda: ResMLP(arch=dict(embed_dims=64, num_blocks=2, patch_size=16),
                             with_pyramid=True),
    'S2MLP': lambda: S2MLP(arch=dict(embed_dims=64, num_blocks=2, patch_size=16),
                           with_pyramid=True),
}


@pytest.mark.parametrize('name', list(BACKBONES))
def test_bf16_autocast_at_detection_size_is_finite(name):
    torch.manual_seed(0)
    model = BACKBONES[name]().eval()
    x = torch.randn(1, 3, 800, 1333)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(x)
    assert len(outs) == 4
    for out in outs:
        assert out.dtype in (torch.bfloat16, torch.float32)
        assert torch.isfinite(out.float()).all()
    assert outs[0].shape[-2:] == (200, 334)
