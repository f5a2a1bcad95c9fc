"""Deployment: ONNX / ``torch.export`` graphs of mmsmlp models with a dynamic
input size, checked against the eager model (``tools/deployment/export.py``).
Needs ``onnx`` and ``onnxruntime`` (``pip install mmsmlp[deploy]``) for ONNX;
importing this package does not import them."""
from .export import (DEFAULT_OPSETS, ONNX_EXPORTERS, ExportError, OnnxRunner,
                     as_outputs, check_parity, compare_outputs, export_onnx,
                     export_torch_program, other_size, program_runner)

__all__ = [
    'ExportError', 'ONNX_EXPORTERS', 'DEFAULT_OPSETS', 'as_outputs', 'other_size',
    'export_onnx', 'export_torch_program', 'OnnxRunner', 'program_runner',
    'compare_outputs', 'check_parity'
]
