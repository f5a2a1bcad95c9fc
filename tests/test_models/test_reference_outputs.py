"""The same outputs and gradients on every tested stack.

``tests/data/reference_outputs.pth`` holds, for a small model of each backbone,
its weights, an input (at the reference size and at another one), the outputs and
the gradients of a loss, written on the current stack. Both stacks must reproduce
them. Regenerate (after a deliberate change of the function computed) with::

    python tests/test_models/test_reference_outputs.py --write
"""
import os.path as osp
import sys

import pytest
import torch

import mmsmlp  # noqa: F401
from mmsmlp.models import ResMLP, S2MLP, SMLPNet

REFERENCE = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'data',
                     'reference_outputs.pth')
SIZES = ((64, 64), (72, 104))

MODELS = {
    'SMLPNet': lambda: SMLPNet(arch=dict(embed_dims=4, depths=[1, 1, 1, 1],
                                         mlp_ratio=2), img_size=64),
    'ResMLP': lambda: ResMLP(arch=dict(embed_dims=8, num_blocks=2, patch_size=8),
                             img_size=64, with_pyramid=True,
                             pyramid_cfg=dict(out_channels=(8, 8, 8, 8))),
    'S2MLP': lambda: S2MLP(arch=dict(embed_dims=8, num_blocks=2, patch_size=8),
                           img_size=64, with_pyramid=True,
                           pyramid_cfg=dict(out_channels=(8, 8, 8, 8))),
}


def compute(name, state=None, inputs=None):
    """Outputs and parameter gradients of ``name`` in training mode (BatchNorm
    with batch statistics) for each input; a seeded model when ``state`` is None."""
    torch.manual_seed(0)
    model = MODELS[name]()
    if state is not None:
        model.load_state_dict(state)
    model.train()
    results = []
    for i, size in enumerate(SIZES):
        x = inputs[i] if inputs is not None else torch.randn(2, 3, *size)
        model.zero_grad(set_to_none=True)
        outs = model(x)
        sum((o.float()**2).mean() for o in outs).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()
                 if p.grad is not None}
        results.append(dict(input=x, outputs=[o.detach() for o in outs],
                            grads=grads))
    return model, results


def write():
    data = {}
    for name in MODELS:
        model, results = compute(name)
        # the state before the forward passes updated the BN statistics
        torch.manual_seed(0)
        data[name] = dict(state=MODELS[name]().state_dict(), results=results)
    torch.save(data, REFERENCE)
    print(f'wrote {REFERENCE}')


@pytest.fixture(scope='module')
def reference():
    return torch.load(REFERENCE, map_location='cpu', weights_only=True)


@pytest.mark.parametrize('name', list(MODELS))
def test_outputs_and_gradients_match_the_reference(reference, name):
    saved = reference[name]
    _, results = compute(name, saved['state'], [r['input'] for r in saved['results']])
    for got, want in zip(results, saved['results']):
        assert len(got['outputs']) == len(want['outputs'])
        for o, w in zip(got['outputs'], want['outputs']):
            torch.testing.assert_close(o, w, rtol=1e-4, atol=1e-5)
        assert got['grads'].keys() == want['grads'].keys()
        for key, g in got['grads'].items():
            torch.testing.assert_close(g, want['grads'][key], rtol=1e-3, atol=1e-5,
                                       msg=lambda m: f'{name} grad {key}: {m}')


if __name__ == '__main__':
    if sys.argv[1:] != ['--write']:
        sys.exit(__doc__)
    write()
