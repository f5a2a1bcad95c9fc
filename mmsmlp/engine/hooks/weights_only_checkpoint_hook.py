"""Checkpoints that load with plain ``torch.load(weights_only=True)``.

In a process that imported mmsmlp, mmengine reads local and downloaded
checkpoints with :func:`mmsmlp.utils.read_checkpoint`, which reads stock ones too
(their message hub pickles ``HistoryBuffer`` objects holding numpy arrays, and
refers to ``getattr(HistoryBuffer, 'mean')``). Elsewhere, torch >= 2.6 loads with
``weights_only=True`` by default and refuses those (``getattr`` must never be
allow-listed there: it opens the door to running code from a file). So that the
checkpoints of mmsmlp's runs load anywhere, this hook makes what is saved plain
data — dicts, lists, strings, numbers and tensors — and rebuilds the objects after
loading (a stock checkpoint, whose HistoryBuffers are real, is left as it is).
"""
import numbers
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer

from mmsmlp.registry import HOOKS

_TAG = '__mmsmlp_history_buffer__'


def to_plain(obj: Any, where: str = 'checkpoint') -> Any:
    """Recursively turn ``obj`` into data ``weights_only`` unpickling accepts.

    HistoryBuffers become tagged dicts, numpy arrays become tensors and numpy
    scalars Python numbers; anything else that is not plain data is an error
    naming where it sits (it would make the checkpoint unloadable).
    """
    if isinstance(obj, np.generic):  # before float: np.float64 subclasses float
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str, bytes, torch.Tensor,
                                       torch.dtype, torch.device, torch.Size)):
        return obj
    if isinstance(obj, HistoryBuffer):
        logs, counts = obj.data
        return {_TAG: True, 'max_length': int(obj.max_length),
                'log_history': torch.from_numpy(np.asarray(logs, dtype=np.float64)),
                'count_history': torch.from_numpy(np.asarray(counts, dtype=np.float64))}
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, numbers.Number):  # e.g. fractions
        return float(obj)
    if isinstance(obj, dict):
        out = {k: to_plain(v, f'{where}[{k!r}]') for k, v in obj.items()}
        if isinstance(obj, OrderedDict):  # state dicts: keep their module versions
            out = OrderedDict(out)
            if hasattr(obj, '_metadata'):
                out._metadata = obj._metadata
        return out
    if isinstance(obj, (list, tuple)):
        items = [to_plain(v, f'{where}[{i}]') for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    raise TypeError(f'{where} holds a {type(obj).__module__}.{type(obj).__qualname__}, '
                    'which a weights_only checkpoint cannot store')


def from_plain(obj: Any) -> Any:
    """Inverse of :func:`to_plain` for the objects it rebuilds (HistoryBuffers)."""
    if isinstance(obj, dict):
        if obj.get(_TAG) is True:
            return HistoryBuffer(obj['log_history'].tolist(),
                                 obj['count_history'].tolist(), obj['max_length'])
        return {k: from_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_plain(v) for v in obj]
    return obj


@HOOKS.register_module()
class WeightsOnlyCheckpointHook(Hook):
    """Save checkpoints as plain data and restore the message hub after loading,
    so that ``resume``, ``load_from`` and ``init_cfg`` work with torch's safe
    ``weights_only=True`` loading.

    It also saves torch's random state and restores it when a run is resumed, so
    that a resumed run continues exactly as the uninterrupted one (mmengine replays
    the data of the finished iterations, which restores the data pipeline's numpy
    state, but not the model's torch state: samplers, dropout, drop path).
    """

    priority = 'VERY_LOW'  # after every hook that adds to the checkpoint

    def __init__(self):
        self._resumed_rng = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['rng_state'] = dict(torch=torch.get_rng_state())
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            checkpoint['rng_state']['cuda'] = torch.cuda.get_rng_state_all()
        plain = to_plain(checkpoint)
        checkpoint.clear()
        checkpoint.update(plain)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # plain data from a checkpoint this hook saved; real HistoryBuffers (a
        # stock checkpoint) pass through from_plain unchanged
        if 'message_hub' in checkpoint:
            checkpoint['message_hub'] = from_plain(checkpoint['message_hub'])
        self._resumed_rng = checkpoint.get('rng_state')

    def before_train(self, runner) -> None:
        # after load_or_resume; only a resumed run (not load_from) continues the
        # random stream of the run it resumes
        rng, self._resumed_rng = self._resumed_rng, None
        if rng is None or runner.iter == 0:
            return
        torch.set_rng_state(rng['torch'])
        if 'cuda' in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng['cuda'])
