"""The one home of torch APIs whose spelling differs between the torch releases
mmsmlp supports (2.1 to 2.13, see ``mmsmlp.version``).

Everything else in the package calls these functions instead of branching on the
torch version itself.
"""
import torch

__all__ = ['is_compiling', 'register_load_state_dict_pre_hook']


def is_compiling() -> bool:
    """Whether torch.compile / torch.export (dynamo) is tracing the caller.

    torch >= 2.3 spells it ``torch.compiler.is_compiling``; torch 2.1 and 2.2 only
    have ``torch._dynamo.is_compiling``, used there alone (those releases no
    longer change).
    """
    public = getattr(torch.compiler, 'is_compiling', None)
    if public is not None:
        return public()
    from torch import _dynamo
    return _dynamo.is_compiling()


def register_load_state_dict_pre_hook(module: torch.nn.Module, hook) -> None:
    """Register ``hook(state_dict, prefix, local_metadata, strict, missing_keys,
    unexpected_keys, error_msgs)`` to run before ``module`` loads a state dict.

    torch >= 2.5 has a public ``register_load_state_dict_pre_hook`` (which passes
    the module first); older releases only the underscored one, which mmpretrain's
    backbones use as well.
    """
    public = getattr(module, 'register_load_state_dict_pre_hook', None)
    if public is not None:
        public(lambda _module, *args: hook(*args))
    else:
        module._register_load_state_dict_pre_hook(hook)
