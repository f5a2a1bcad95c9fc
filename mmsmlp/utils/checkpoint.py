"""Helpers shared by every checkpoint converter of mmsmlp (``tools/model_converters``).

A converter is three steps, one helper each:

1. :func:`load_state_source` reads the source file, **only** with
   ``torch.load(path, map_location='cpu', weights_only=True)``: a file whose pickle
   needs any Python object other than tensors and plain containers is refused (it is
   never unpickled with ``weights_only=False``). Every failure (missing, empty,
   truncated, unsafe file, missing entry) becomes one clear error naming the file.
2. :func:`rename_keys` maps the source keys with a list of :class:`KeyRule` and
   fails on any source key that no rule consumed: a converter never drops a tensor
   silently.
3. :func:`save_converted_checkpoint` writes ``{'meta': ..., 'state_dict': ...}`` (the
   mmengine layout read by ``mmengine.runner.load_checkpoint``) atomically: to a
   temporary file in the destination folder, then renamed, so that an interrupted
   conversion leaves no half-written checkpoint behind.
"""
import argparse
import os
import os.path as osp
import pickle
import re
import tempfile
from collections import OrderedDict
from typing import (Callable, Dict, Iterable, Mapping, NamedTuple, Optional,
                    Sequence, Tuple, Union)

import torch
from mmengine.utils import mkdir_or_exist

__all__ = [
    'CheckpointError', 'KeyRule', 'DEFAULT_SAFE_GLOBALS', 'read_checkpoint',
    'check_against_model',
    'load_state_source',
    'rename_keys', 'conv1x1_to_linear', 'save_converted_checkpoint'
]

#: Classes allowed in a source pickle besides tensors and plain containers.
#: DeiT-style training scripts (the official sMLPNet one among them) store their
#: command-line arguments as an ``argparse.Namespace`` next to the weights; it is
#: rebuilt as an empty namespace whose ``__dict__`` is filled with the stored
#: values, which runs no code.
DEFAULT_SAFE_GLOBALS = (argparse.Namespace, )

_MAX_LISTED = 20  # keys named in one error message


class CheckpointError(ValueError):
    """A checkpoint cannot be used: unreadable, refused for safety, or of a layout
    the converter does not know. The message names the file or the keys."""


def _list_keys(keys: Sequence, limit: int = _MAX_LISTED) -> str:
    keys = list(keys)
    shown = ', '.join(repr(k) for k in keys[:limit])
    more = f', ... ({len(keys) - limit} more)' if len(keys) > limit else ''
    return f'[{shown}{more}]'


def _weights_only_detail(err: Exception) -> Optional[str]:
    """The reason of a ``weights_only`` refusal, or None for another error."""
    msg = str(err)
    if not (isinstance(err, pickle.UnpicklingError)
            and ('Weights only load failed' in msg or 'WeightsUnpickler' in msg)):
        return None
    found = re.search(r'GLOBAL\s+(\S+?)(?:\s|$)', msg)
    if found:
        return f'it needs the Python global {found.group(1)!r}'
    found = re.search(r'WeightsUnpickler error:\s*(\S[^\n]*)', msg)
    return found.group(1).strip() if found else 'unsupported pickle content'


def read_checkpoint(path: str, safe_globals: Iterable[type] = ()):
    """``torch.load(path, map_location='cpu', weights_only=True)``, its failures
    turned into one clear error naming the file (missing, empty, truncated,
    corrupt, or refused for safety: a pickle that needs Python objects other than
    tensors and plain containers is never unpickled)."""
    if not osp.exists(path):
        raise FileNotFoundError(f'checkpoint file {path!r} does not exist')
    if osp.isdir(path):
        raise CheckpointError(f'{path!r} is a directory, not a checkpoint file')
    size = osp.getsize(path)
    if size == 0:
        raise CheckpointError(f'checkpoint file {path!r} is empty (0 bytes); it was '
                              'probably not written completely: download or save '
                              'it again')
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location='cpu', weights_only=True)
    except OSError:
        raise  # e.g. permission denied: the message already names the file
    except Exception as err:  # noqa: B902  torch raises many types here
        detail = _weights_only_detail(err)
        if detail is not None:
            raise CheckpointError(
                f'checkpoint file {path!r} is refused for safety and was not loaded: '
                f'it contains Python objects other than tensors ({detail}), which '
                'could run arbitrary code when unpickled. mmsmlp reads checkpoints '
                'only with torch.load(weights_only=True). If you trust the file, '
                're-save its state dict (a dict of tensors) in a trusted '
                'environment and convert that. (A truncated file in the legacy, '
                'non-zip format can also cause this.)') from err
        first_line = (str(err).strip().splitlines() or [''])[0][:300]
        raise CheckpointError(
            f'checkpoint file {path!r} ({size} bytes) cannot be read by torch.load: '
            'it is truncated or corrupt, or not a file written by torch.save '
            f'({type(err).__name__}: {first_line}). Download or save it again.'
        ) from err


def _check_state_dict(obj, path: str, entry: str) -> 'OrderedDict[str, torch.Tensor]':
    if not isinstance(obj, Mapping):
        raise CheckpointError(f'{entry} of checkpoint {path!r} is a '
                              f'{type(obj).__name__}, not a state dict (a mapping '
                              'of names to tensors)')
    if not obj:
        raise CheckpointError(f'{entry} of checkpoint {path!r} is an empty state dict')
    bad = [k for k, v in obj.items()
           if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f'{entry} of checkpoint {path!r} is not a state dict: {len(bad)} entries '
            f'are not tensors named by strings: {_list_keys(bad)}')
    return OrderedDict(obj)


def load_state_source(
    path: Union[str, os.PathLike],
    keys: Sequence[Optional[str]] = ('model', ),
    safe_globals: Iterable[type] = DEFAULT_SAFE_GLOBALS,
    hint: str = '',
) -> Tuple[Optional[str], 'OrderedDict[str, torch.Tensor]']:
    """Read the state dict of a source checkpoint, safely.

    The file is loaded only with ``torch.load(path, map_location='cpu',
    weights_only=True)``; ``safe_globals`` (default :data:`DEFAULT_SAFE_GLOBALS`)
    are allowed through ``torch.serialization.safe_globals`` for that call only.

    Args:
        path (str | PathLike): the source file.
        keys (Sequence[str | None]): top-level entries tried in this order; the
            first one present is returned. ``None`` stands for the loaded object
            itself, for files that hold a bare state dict (e.g. timm weights).
            Defaults to ``('model',)``.
        safe_globals (Iterable[type]): classes the pickle may contain besides
            tensors and plain containers.
        hint (str): appended to the error raised when no entry of ``keys`` exists.

    Returns:
        tuple: ``(key, state_dict)``: the entry used (``None`` for the object
        itself) and an ``OrderedDict`` mapping names to CPU tensors of any shape.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file is empty, truncated or corrupt; it contains
            Python objects other than tensors (refused, not loaded); it has none
            of ``keys`` (the keys found are listed); or the entry is not a
            mapping of names to tensors.
    """
    path = osp.expanduser(os.fspath(path))
    keys = tuple(keys)
    if not keys:
        raise ValueError('load_state_source: `keys` must name at least one entry')
    obj = read_checkpoint(path, safe_globals)
    for key in keys:
        if key is None:
            if isinstance(obj, Mapping) and obj and all(
                    isinstance(v, torch.Tensor) for v in obj.values()):
                return None, _check_state_dict(obj, path, 'the top-level object')
        elif isinstance(obj, Mapping) and key in obj:
            return key, _check_state_dict(obj[key], path, f'entry {key!r}')
    wanted = ' or '.join('a bare state dict' if k is None else repr(k) for k in keys)
    if isinstance(obj, Mapping):
        found = f'its top-level keys are {_list_keys(obj.keys())}'
    else:
        found = f'it holds a {type(obj).__name__}, not a dict'
    raise CheckpointError(f'checkpoint {path!r} has no entry {wanted}: {found}'
                          + (f'. {hint}' if hint else ''))


class KeyRule(NamedTuple):
    """One renaming rule of :func:`rename_keys`.

    Attributes:
        pattern (str): regular expression matched against the *whole* source key.
        target (str | callable | None): the new key: a template expanded with the
            match (``\\1``, ``\\g<name>``), or a function ``match -> str``, or
            ``None`` to discard the tensor on purpose (explicit, never silent).
        transform (callable, optional): ``(tensor, source_key) -> tensor``, e.g.
            :func:`conv1x1_to_linear`.
    """
    pattern: str
    target: Union[str, Callable[['re.Match'], str], None]
    transform: Optional[Callable[[torch.Tensor, str], torch.Tensor]] = None


def rename_keys(state_dict: Mapping[str, torch.Tensor],
                rules: Sequence[Union[KeyRule, tuple]],
                source: str = 'checkpoint') -> 'OrderedDict[str, torch.Tensor]':
    """Map every key of ``state_dict`` with the first rule that matches it.

    Args:
        state_dict (Mapping[str, Tensor]): source tensors, any shapes.
        rules (Sequence[KeyRule | tuple]): tried in order; tuples are read as
            ``KeyRule(*rule)``.
        source (str): what to call the source in error messages (e.g. the file).

    Returns:
        OrderedDict[str, Tensor]: renamed (and transformed) tensors, in source order.

    Raises:
        CheckpointError: source keys that no rule consumed (all listed), or two
            source keys mapped to the same new key.
    """
    compiled = [(re.compile(r.pattern), r) for r in (KeyRule(*r) for r in rules)]
    out, origin, unmatched = OrderedDict(), {}, []
    for key, tensor in state_dict.items():
        for regex, rule in compiled:
            match = regex.fullmatch(key)
            if match is not None:
                break
        else:
            unmatched.append(key)
            continue
        if rule.target is None:
            continue
        new_key = rule.target(match) if callable(rule.target) \
            else match.expand(rule.target)
        if new_key in origin:
            raise CheckpointError(f'{source}: keys {origin[new_key]!r} and {key!r} '
                                  f'are both mapped to {new_key!r}')
        origin[new_key] = key
        out[new_key] = rule.transform(tensor, key) if rule.transform else tensor
    if unmatched:
        raise CheckpointError(
            f'{source}: {len(unmatched)} keys are not mapped by any rule of the '
            f'converter (it refuses to drop tensors silently): '
            f'{_list_keys(unmatched)}. The checkpoint is not of the expected '
            'architecture, or the converter misses a rule.')
    return out


def check_against_model(converted: Mapping[str, torch.Tensor], model: torch.nn.Module,
                        prefix: str = 'backbone.', what: str = '') -> None:
    """Check that ``converted`` fills ``model`` exactly under ``prefix``: every
    tensor of the model present with its shape, nothing else under the prefix.

    Raises:
        CheckpointError: naming the missing, unexpected and mis-shaped keys.
    """
    want = {f'{prefix}{k}': tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in converted.items() if k.startswith(prefix)}
    missing = sorted(set(want) - set(got))
    unexpected = sorted(set(got) - set(want))
    wrong = [f'{k}: {got[k]} != {want[k]}' for k in sorted(set(got) & set(want))
             if got[k] != want[k]]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f'the converted weights do not match {what or type(model).__name__}: '
            f'missing {missing[:20]}, unexpected {unexpected[:20]}, shape '
            f'mismatches {wrong[:20]}')


def conv1x1_to_linear(tensor: torch.Tensor, key: str = '') -> torch.Tensor:
    """Weight of a ``Conv2d(I, O, 1)``, shape ``(O, I, 1, 1)``, as the weight of a
    ``Linear(I, O)``, shape ``(O, I)`` (a view, no copy)."""
    if tensor.dim() != 4 or tuple(tensor.shape[2:]) != (1, 1):
        raise CheckpointError(f'key {key!r} has shape {tuple(tensor.shape)}; a 1x1 '
                              'convolution weight (out, in, 1, 1) was expected')
    return tensor.reshape(tensor.shape[0], tensor.shape[1])


def _check_plain(obj, where: str = 'meta'):
    """``meta`` must load under ``weights_only=True``: only plain Python values."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_plain(v, f'{where}[{i}]')
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f'{where} has a key of type {type(k).__name__}')
            _check_plain(v, f'{where}[{k!r}]')
    else:
        raise TypeError(f'{where} is a {type(obj).__name__}; meta may only hold '
                        'str, int, float, bool, None, lists, tuples and dicts, so '
                        'that the checkpoint loads with weights_only=True')


def _same_file(a: str, b: str) -> bool:
    if osp.exists(a) and osp.exists(b):
        return osp.samefile(a, b)
    return osp.realpath(a) == osp.realpath(b)


def save_converted_checkpoint(state_dict: Mapping[str, torch.Tensor],
                              dst: Union[str, os.PathLike],
                              meta: Optional[Dict] = None,
                              src: Union[str, os.PathLike, None] = None) -> str:
    """Save ``{'meta': meta, 'state_dict': OrderedDict(state_dict)}`` to ``dst``.

    Parent folders are created. The file is written to a temporary file in the
    destination folder, flushed to disk and renamed onto ``dst`` (``os.replace``,
    atomic on one file system): an interrupted conversion leaves ``dst`` as it was.

    Args:
        state_dict (Mapping[str, Tensor]): the converted tensors (saved contiguous).
        dst (str | PathLike): destination file; an existing file is replaced.
        meta (dict, optional): plain values only (str, numbers, lists, dicts), so
            that the file loads with ``torch.load(weights_only=True)``.
        src (str | PathLike, optional): the source file, which is never overwritten.

    Returns:
        str: ``dst``.

    Raises:
        CheckpointError: ``dst`` is the source file or a directory.
        TypeError: a value of ``state_dict`` is not a tensor, or ``meta`` is not plain.
    """
    dst = osp.expanduser(os.fspath(dst))
    if src is not None and _same_file(dst, osp.expanduser(os.fspath(src))):
        raise CheckpointError(f'refusing to overwrite the source checkpoint {src!r}: '
                              'give another destination')
    if osp.isdir(dst):
        raise CheckpointError(f'destination {dst!r} is a directory; give a file name')
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise TypeError(f'state_dict values must be tensors; not for {_list_keys(bad)}')
    meta = dict(meta or {})
    _check_plain(meta)
    checkpoint = {
        'meta': meta,
        'state_dict': OrderedDict(
            (k, v.detach().contiguous()) for k, v in state_dict.items()),
    }
    folder = osp.dirname(osp.abspath(dst))
    mkdir_or_exist(folder)
    fd, tmp = tempfile.mkstemp(
        dir=folder, prefix=f'.{osp.basename(dst)}.', suffix='.part')
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600 files
        os.replace(tmp, dst)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    return dst
