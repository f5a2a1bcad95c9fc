"""The one home of torch APIs whose spelling differs between the torch releases
mmsmlp supports (2.1 to 2.13, see ``mmsmlp.version``).

Everything else in the package calls these functions instead of branching on the
torch version itself.
"""
import contextlib
import inspect
import os
import sys
import tempfile
from typing import Dict, Optional

import torch

__all__ = ['export_program', 'is_autocast_enabled', 'is_compiling', 'onnx_export',
           'register_load_state_dict_pre_hook', 'statically_true']


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


# symbolic_shapes.statically_known_true came with torch 2.3; the version decides,
# as importing the module to look would load sympy with mmsmlp (torch.__version__
# is a TorchVersion: it compares as a version, not as a string)
_STATICALLY_KNOWN_TRUE = torch.__version__ >= '2.3'


def statically_true(condition) -> bool:
    """Whether ``condition`` holds, decided without tying a compiled graph to it.

    ``condition`` is a plain bool, or, under torch.compile / torch.export with
    dynamic shapes, a symbolic one (e.g. ``size == 56`` for a symbolic ``size``).
    A symbolic condition counts as true only where it holds for every size the
    graph accepts; asking adds no guard, so the graph is not recompiled or
    specialised for the sizes where it happens to hold. Use it for shortcuts that
    are exact either way.

    torch >= 2.3 has ``statically_known_true`` (dynamo traces it without a
    guard); torch 2.1 and 2.2 have no guard-free test, and under dynamo a size
    cannot be told from an int there, so every condition met while compiling is
    False on those releases.
    """
    if not is_compiling():
        return bool(condition)
    if not _STATICALLY_KNOWN_TRUE:
        return False
    # imported here: it loads sympy, which `import torch` does not (torch is
    # compiling, so the module is loaded already)
    from torch.fx.experimental.symbolic_shapes import statically_known_true
    return statically_known_true(condition)


def _dynamic_shapes(dynamic: Dict[int, int]):
    """``dynamic_shapes`` for one input whose dimensions ``dynamic`` (dimension ->
    smallest size) are dynamic, or None where torch has no ``Dim.DYNAMIC``."""
    hint = getattr(getattr(torch.export, 'Dim', None), 'DYNAMIC', None)
    if hint is None:
        return None
    return ({d: hint(min=low) for d, low in dynamic.items()}, )


def onnx_export(model: torch.nn.Module, example: torch.Tensor, path: str, *,
                dynamo: bool, opset: int, input_name: str, output_names,
                dynamic: Optional[Dict[int, int]] = None,
                axis_names: Optional[Dict[str, Dict[int, str]]] = None) -> None:
    """``torch.onnx.export(model, (example, ), path)`` with the exporter named:
    the TorchScript-based one (``dynamo=False``) or the torch.export-based one
    (``dynamo=True``), writing one self-contained file. ``dynamic`` (input
    dimension -> smallest size) leaves those input dimensions dynamic;
    ``axis_names`` names the dynamic dimensions of the input and of each output
    (``dynamic_axes``) for the TorchScript-based exporter, which cannot derive
    them (the other one does).

    torch >= 2.5 chooses with ``torch.onnx.export(..., dynamo=...)`` (dynamo is
    its default from 2.9) and needs onnxscript for it; torch 2.1 has only the
    TorchScript-based exporter under that name (its ``torch.onnx.dynamo_export``
    is a prototype without per-dimension dynamic sizes), so ``dynamo=True``
    raises a ``RuntimeError`` there.
    """
    params = inspect.signature(torch.onnx.export).parameters
    kwargs = dict(opset_version=opset, input_names=[input_name],
                  output_names=list(output_names))
    if dynamo:
        if 'dynamo' not in params:
            raise RuntimeError(
                'the torch.export-based ONNX exporter (dynamo) needs torch >= 2.5; '
                f'torch {torch.__version__} has the TorchScript-based one only')
        if 'external_data' in params:  # weights inside the .onnx file (< 2 GB)
            kwargs['external_data'] = False
        shapes = _dynamic_shapes(dynamic) if dynamic else None
        if dynamic and shapes is None:
            raise RuntimeError(f'torch {torch.__version__} has no '
                               'torch.export.Dim.DYNAMIC for dynamic sizes')
        torch.onnx.export(model, (example, ), path, dynamo=True, verbose=False,
                          dynamic_shapes=shapes, **kwargs)
        return
    if 'dynamo' in params:
        kwargs['dynamo'] = False
    # torch 2.13's TorchScript-based exporter switches its C++ log on whatever
    # ``verbose`` says (it tests the function ``_jit_is_onnx_log_enabled``, not
    # its result) and prints the whole graph to stdout when an export fails: the
    # exception says why, the dump is dropped
    with tempfile.TemporaryFile('w+') as captured:
        with _stdout_to(captured):
            torch.onnx.export(model, (example, ), path, verbose=False,
                              dynamic_axes=axis_names if dynamic else None, **kwargs)
        captured.seek(0)
        sys.stdout.write(captured.read())  # what a successful export printed


@contextlib.contextmanager
def _stdout_to(file):
    """Send what is written to file descriptor 1 (C++ code included) to ``file``
    while the ``with`` block runs."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(file.fileno(), 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def export_program(model: torch.nn.Module, example: torch.Tensor,
                   dynamic: Optional[Dict[int, int]] = None):
    """``torch.export.export(model, (example, ))`` with the dimensions of
    ``dynamic`` (dimension -> smallest size) left dynamic; None exports for the
    example's shape only.

    Releases with ``torch.export.Dim.DYNAMIC`` (2.13 is tested) take
    ``dynamic_shapes`` with ``Dim.DYNAMIC(min=...)``; torch 2.1's prototype takes
    ``constraints`` built with ``torch.export.dynamic_dim`` (and refuses these
    models: its solver cannot prove their padding arithmetic for every size).
    Returns the ``ExportedProgram``.
    """
    if not dynamic:
        return torch.export.export(model, (example, ))
    shapes = _dynamic_shapes(dynamic)
    if shapes is not None:
        return torch.export.export(model, (example, ), dynamic_shapes=shapes)
    from torch.export import dynamic_dim
    return torch.export.export(
        model, (example, ),
        constraints=[dynamic_dim(example, d) >= low for d, low in dynamic.items()])


# torch >= 2.4 asks about any device with one call (``get_autocast_dtype`` came
# with that device-generic API); older releases have one function per device type
_DEVICE_GENERIC_AUTOCAST = hasattr(torch, 'get_autocast_dtype')
_AUTOCAST_QUERIES = {
    'cuda': 'is_autocast_enabled',  # torch < 2.4: takes no argument, CUDA only
    'cpu': 'is_autocast_cpu_enabled',
    'xla': 'is_autocast_xla_enabled',
    'ipu': 'is_autocast_ipu_enabled',
}


def is_autocast_enabled(device_type: str) -> bool:
    """Whether ``torch.autocast`` is active for ``device_type`` (``'cpu'``,
    ``'cuda'``, ...) in the calling thread; False for a device type autocast does
    not know.

    torch >= 2.4: ``torch.is_autocast_enabled(device_type)``; torch 2.1 - 2.3:
    ``torch.is_autocast_enabled()`` answers for CUDA only, and each other device
    type has its own ``torch.is_autocast_<device>_enabled()``.
    """
    if _DEVICE_GENERIC_AUTOCAST:
        try:
            return torch.is_autocast_enabled(device_type)
        except RuntimeError:  # a device type without autocast (e.g. 'meta')
            return False
    query = getattr(torch, _AUTOCAST_QUERIES.get(device_type, ''), None)
    return bool(query()) if query is not None else False


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
