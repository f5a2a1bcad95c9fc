"""Export a model to ONNX or to a ``torch.export`` program, with a dynamic input
size, and check the exported graph against the eager model.

A graph exported with a dynamic size must compute what the eager model computes at
*every* size, not only at the example it was traced at: an exporter that turns a
size into a constant writes a graph that fails elsewhere or, worse, returns maps
of the wrong size without an error. :func:`check_parity` compares shapes and
values, and the tool (``tools/deployment/export.py``) runs it at the example
size and at a size with another padding pattern (:func:`other_size`).

What works where (torch 2.13 and 2.1 tested; the backbones in eval mode, sMLPNet
after ``switch_to_deploy()``):

* ONNX, TorchScript-based exporter (``exporter='torchscript'``): torch 2.1 and
  2.13; dynamic batch, height and width.
* ONNX, torch.export-based exporter (``exporter='dynamo'``): torch >= 2.5 with
  onnxscript (2.13 here); dynamic batch, height and width.
* ``torch.export`` programs (:func:`export_torch_program`): torch 2.13 with
  dynamic batch, height and width; torch 2.1's prototype refuses dynamic sizes
  (see :func:`mmsmlp.utils.compat.export_program`) and exports fixed sizes only.
"""
import contextlib
import os
import os.path as osp
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from mmsmlp.models.utils.traced_size import fixed_size_tracing
from mmsmlp.utils.compat import export_program, onnx_export

__all__ = [
    'ExportError', 'ONNX_EXPORTERS', 'DEFAULT_OPSETS', 'as_outputs', 'other_size',
    'export_onnx', 'export_torch_program', 'OnnxRunner', 'program_runner',
    'compare_outputs', 'check_parity'
]

#: the ONNX exporters of torch: TorchScript-based and torch.export-based
ONNX_EXPORTERS = ('torchscript', 'dynamo')
#: default opsets: the TorchScript-based exporter's newest of torch 2.1, and the
#: oldest that the torch.export-based one writes natively
DEFAULT_OPSETS = {'torchscript': 17, 'dynamo': 18}
#: the input of an exported graph: ``(batch, 3, height, width)``
INPUT_NAME = 'input'
_INPUT_AXES = {0: 'batch', 2: 'height', 3: 'width'}


class ExportError(RuntimeError):
    """An exporter refused the model, or the exported graph does not compute what
    the eager model computes; the message says which, where and why."""


def as_outputs(out) -> List[torch.Tensor]:
    """The tensors of a model output (a tensor, or a tuple / list of them)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)) and all(isinstance(o, torch.Tensor) for o in out):
        return list(out)
    raise ExportError(f'the model returns {type(out).__name__}; an exported graph '
                      'needs a tensor or a tuple of tensors')


def other_size(height: int, width: int, min_size: int = 32) -> Tuple[int, int]:
    """A second input size to check a dynamic graph at: about 2/3 and 3/4 of
    ``(height, width)`` plus an odd offset (at least ``min_size``), so that it
    differs from the example and, being odd, is padded at every stride of the
    backbones where a multiple of 32 is not."""
    h = max(min_size, height * 2 // 3 + 7)
    w = max(min_size, width * 3 // 4 + 5)
    h += 1 - h % 2
    w += 1 - w % 2
    if (h, w) == (height, width):
        h += 2
    return h, w


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    # torch's export errors start with a banner line; keep the informative one
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    lines = [ln for ln in lines
             if not ln.startswith(('[torch.onnx]', 'Failed to export the model with'))]
    if not lines:
        return type(err).__name__
    line = lines[0]
    if line.endswith(('!', ':')) and len(lines) > 1:  # a heading: add its first item
        line = f'{line} {lines[1]}'
    return f'{type(err).__name__}: {line[:500]}'


def _output_names(outputs: Sequence[torch.Tensor]) -> List[str]:
    if len(outputs) == 1:
        return ['output']
    return [f'output_{i}' for i in range(len(outputs))]


def export_onnx(module: torch.nn.Module,
                example: torch.Tensor,
                path: str,
                dynamic: bool = True,
                exporter: str = 'torchscript',
                opset: Optional[int] = None,
                min_size: int = 32) -> float:
    """Write ``module`` (eval mode, ``(B, 3, H, W) -> tensor(s)``) to the ONNX file
    ``path``.

    Args:
        module (nn.Module): the model; put in eval mode here.
        example (Tensor): the example input. With ``dynamic``, use a batch of at
            least 2 (torch.export specialises a batch of 1).
        path (str): the ``.onnx`` file (its folder is created).
        dynamic (bool): batch, height and width dynamic (height and width at
            least ``min_size``); False: the example's shape only.
        exporter (str): ``'torchscript'`` or ``'dynamo'`` (see the module
            docstring for the torch releases of each).
        opset (int, optional): ONNX opset; default :data:`DEFAULT_OPSETS`.

    Returns:
        float: the seconds the export took.

    Raises:
        ExportError: the exporter refused the model (with its reason), or the
            file it wrote is not a valid ONNX model.
    """
    if exporter not in ONNX_EXPORTERS:
        raise ValueError(f'exporter={exporter!r}; accepted: {ONNX_EXPORTERS}')
    module.eval()
    with torch.no_grad():
        outputs = as_outputs(module(example))
    names = _output_names(outputs)
    axes = {INPUT_NAME: dict(_INPUT_AXES)}
    for name, out in zip(names, outputs):
        # batch first; the spatial sizes of maps follow the input
        axes[name] = {0: 'batch'}
        if out.dim() == 4:
            axes[name].update({2: f'{name}_height', 3: f'{name}_width'})
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    start = time.perf_counter()
    # a graph for one size holds that size as constants: every shape in it is
    # known, as the ONNX forms of some heads' ops (adaptive pooling) require
    fixed = contextlib.nullcontext() if dynamic else fixed_size_tracing()
    try:
        with torch.no_grad(), fixed:
            onnx_export(module, example, path, dynamo=exporter == 'dynamo',
                        opset=opset or DEFAULT_OPSETS[exporter],
                        input_name=INPUT_NAME, output_names=names,
                        dynamic={0: 1, 2: min_size, 3: min_size} if dynamic else None,
                        axis_names=axes)
    except Exception as err:  # whatever the exporter raises: one clear reason
        raise ExportError(f'the {exporter} ONNX exporter of torch '
                          f'{torch.__version__} refused the model: '
                          f'{_first_line(err)}') from err
    seconds = time.perf_counter() - start
    import onnx
    try:
        onnx.checker.check_model(path)
    except Exception as err:
        raise ExportError(f'{path}: the {exporter} exporter wrote an invalid ONNX '
                          f'model: {_first_line(err)}') from err
    return seconds


def export_torch_program(module: torch.nn.Module,
                         example: torch.Tensor,
                         path: Optional[str] = None,
                         dynamic: bool = True,
                         min_size: int = 32):
    """``torch.export`` ``module`` (eval mode) with a dynamic batch, height and
    width (at least ``min_size``), or for the example's shape only; save it to
    ``path`` (``.pt2``, ``torch.export.save``) when given.

    Returns:
        tuple: the ``ExportedProgram`` and the seconds the export took.

    Raises:
        ExportError: torch.export refused the model (with its reason).
    """
    module.eval()
    start = time.perf_counter()
    try:
        with torch.no_grad():
            program = export_program(
                module, example,
                {0: 1, 2: min_size, 3: min_size} if dynamic else None)
    except Exception as err:
        what = 'with a dynamic size' if dynamic else 'for a fixed size'
        raise ExportError(f'torch.export of torch {torch.__version__} refused the '
                          f'model {what}: {_first_line(err)}') from err
    seconds = time.perf_counter() - start
    if path is not None:
        os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
        torch.export.save(program, path)
    return program, seconds


class OnnxRunner:
    """Runs an ONNX file with onnxruntime on the CPU: ``runner(x)`` takes a
    ``(B, 3, H, W)`` tensor and returns the outputs as numpy arrays.

    Args:
        path (str): the ``.onnx`` file.
        threads (int, optional): onnxruntime's intra-op threads (its default:
            all cores).
    """

    def __init__(self, path: str, threads: Optional[int] = None):
        import onnxruntime as ort
        options = ort.SessionOptions()
        # a failing run reaches the caller as an ExportError with onnxruntime's
        # message; its own log would print it a second time
        options.log_severity_level = 4
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                path, sess_options=options, providers=['CPUExecutionProvider'])
        except Exception as err:
            raise ExportError(f'onnxruntime {ort.__version__} cannot load {path}: '
                              f'{_first_line(err)}') from err
        self.path = path
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> List[np.ndarray]:
        try:
            return self.session.run(None, {self.input_name: x.detach().cpu().numpy()})
        except Exception as err:
            raise ExportError(f'onnxruntime fails on {self.path} at input shape '
                              f'{tuple(x.shape)}: {_first_line(err)}') from err


def program_runner(program) -> Callable[[torch.Tensor], List[np.ndarray]]:
    """``runner(x)`` for a ``torch.export`` program: its outputs as numpy arrays."""
    module = program.module()

    def run(x: torch.Tensor) -> List[np.ndarray]:
        try:
            with torch.no_grad():
                return [o.numpy() for o in as_outputs(module(x))]
        except ExportError:
            raise
        except Exception as err:
            raise ExportError(f'the exported program fails at input shape '
                              f'{tuple(x.shape)}: {_first_line(err)}') from err

    return run


def compare_outputs(expected: Sequence[torch.Tensor],
                    got: Sequence[np.ndarray]) -> List[Dict[str, object]]:
    """Shape and difference of each exported output against eager.

    Returns:
        list[dict]: per output ``shape``, ``max_abs`` (largest absolute
        difference) and ``relative`` (``max_abs`` over the largest absolute eager
        value).

    Raises:
        ExportError: a different number of outputs, or an output of another shape
            (a size of the example input held in the graph).
    """
    if len(expected) != len(got):
        raise ExportError(f'the exported graph returns {len(got)} outputs; the '
                          f'eager model {len(expected)}')
    stats = []
    for i, (ref, out) in enumerate(zip(expected, got)):
        ref = ref.detach().float().cpu().numpy()
        if tuple(out.shape) != tuple(ref.shape):
            raise ExportError(
                f'output {i} has shape {tuple(out.shape)} in the exported graph but '
                f'{tuple(ref.shape)} in the eager model: the graph holds a size of '
                'the example it was exported at')
        diff = float(np.abs(out.astype(np.float64) - ref).max()) if ref.size else 0.
        scale = float(np.abs(ref).max()) if ref.size else 0.
        stats.append(dict(shape=tuple(ref.shape), max_abs=diff,
                          relative=diff / scale if scale > 0 else diff))
    return stats


def check_parity(module: torch.nn.Module, runner: Callable, x: torch.Tensor,
                 tolerance: float) -> List[Dict[str, object]]:
    """Run ``module`` (eager) and ``runner`` (the exported graph) on ``x`` and
    compare (:func:`compare_outputs`).

    Raises:
        ExportError: shapes differ, or an output's relative difference is above
            ``tolerance``.
    """
    with torch.no_grad():
        expected = as_outputs(module(x))
    stats = compare_outputs(expected, runner(x))
    for i, s in enumerate(stats):
        if not s['relative'] <= tolerance:  # NaN fails too
            raise ExportError(
                f'output {i} {s["shape"]} at input {tuple(x.shape)} differs from '
                f'eager: max abs {s["max_abs"]:.3g}, relative {s["relative"]:.3g} > '
                f'tolerance {tolerance:g}')
    return stats
