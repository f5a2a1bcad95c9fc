"""Sizes read off tensors while a graph is traced, for one size or for all.

Inside ``torch.jit.trace`` (which the TorchScript-based ONNX exporter runs)
``x.shape[i]`` is a traced 0-dim tensor: the paddings, crops and token-grid
resizes of the backbones are computed from it in the graph, which then serves
every input size. Under :func:`fixed_size_tracing` :func:`traced_size` returns a
Python int instead: the graph serves the traced size only, and every shape in it
is known to the exporter, which the ONNX forms of some ops need (the adaptive
pooling of mmseg's UPerHead has no ONNX form for a size known at run time only).
Outside tracing both return ``x.shape[i]`` as it is (an int, or a symbolic size
under torch.compile / torch.export).
"""
import contextlib
import warnings

import torch

__all__ = ['fixed_size_tracing', 'is_fixed_size_tracing', 'traced_size']

_depth = 0  # nesting depth of fixed_size_tracing (an export runs in one thread)


@contextlib.contextmanager
def fixed_size_tracing():
    """Record the sizes of the traced input as constants (see the module
    docstring); for exporting a graph for one input size."""
    global _depth
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1


def is_fixed_size_tracing() -> bool:
    """Whether a ``torch.jit.trace`` inside :func:`fixed_size_tracing` runs."""
    return _depth > 0 and torch.jit.is_tracing()


def traced_size(x: torch.Tensor, dim: int):
    """``x.shape[dim]``; a Python int while :func:`is_fixed_size_tracing`."""
    size = x.shape[dim]
    if is_fixed_size_tracing():
        with warnings.catch_warnings():  # a constant is what is asked for
            warnings.simplefilter('ignore', torch.jit.TracerWarning)
            return int(size)
    return size
