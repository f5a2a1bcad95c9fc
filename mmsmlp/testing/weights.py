"""Random weights for equality tests."""
import torch

__all__ = ['randomise_weights']


def randomise_weights(model: torch.nn.Module, seed: int = 0,
                      scale: float = 0.2) -> torch.nn.Module:
    """Give every float tensor of ``model`` (BatchNorm statistics included) a seeded
    random value, so that no branch is an identity or a zero by its initialisation
    and an equality test cannot pass by accident: running variances in [0.5, 1.5),
    norm weights about 1, everything else ``N(0, scale^2)``. Returns ``model``."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith('running_var'):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif 'norm' in name and name.endswith('weight'):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1 + 1.)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * scale)
    return model
