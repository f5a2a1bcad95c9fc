"""A pickle module that rebuilds checkpoint data and nothing else.

``torch.load(f, pickle_module=mmsmlp.utils.safe_unpickler, weights_only=False)``
unpickles with :class:`Unpickler` (torch subclasses it for the data pickle and
resolves the storage names itself), then :func:`finalize` turns the stand-ins it
built into real objects. :func:`mmsmlp.utils.read_checkpoint` does both; call that.

What a pickle may name (everything else raises :class:`ForbiddenGlobalError`, which
names the global):

* tensors: ``torch._utils._rebuild_tensor_v2`` and ``_rebuild_parameter``,
  checked: the data must be a storage torch read from this file, of the size the
  file holds, and the tensor must lie inside it; no backward hooks; torch dtypes,
  ``torch.Size``, ``torch.device``. (Tensors of the dtypes torch >= 2.3 saves
  with ``_rebuild_tensor_v3`` and ``torch.storage.UntypedStorage``, e.g. uint16
  or float8, are refused: the storage class would have to be handed out.)
* containers and values: ``collections.OrderedDict``, ``set``, ``frozenset``,
  ``complex``; bytes through ``_codecs.encode(text, 'latin1')`` and ``bytes()``
  (how protocol 2 writes them);
* numpy arrays, scalars and dtypes of booleans and numbers (the names of numpy 1.x,
  ``numpy.core.multiarray``, and 2.x, ``numpy._core.multiarray``), rebuilt from
  their raw bytes with the installed numpy;
* mmengine's ``HistoryBuffer`` (the message hub of every mmengine checkpoint) and
  ``argparse.Namespace`` (the ``args`` of DeiT-style training scripts), rebuilt
  through their constructors from checked state;
* ``builtins.getattr`` only as ``getattr(HistoryBuffer, name)`` for the statistics
  methods mmengine registers by default (min, max, current, mean), which a
  HistoryBuffer's pickle refers to; any other use is refused.

No pickle opcode ever reaches a real tensor, HistoryBuffer, Namespace or numpy
object, a torch function or a class that could be modified: the unpickler hands
out fresh wrappers, immutable built-in types and stand-ins, which :func:`finalize`
replaces after the last opcode ran.
The result holds only data (containers, numbers, strings, bytes, tensors, numpy
values, HistoryBuffers, Namespaces); anything else is refused.
"""
import argparse
import math
import pickle
from collections import OrderedDict
from typing import Any, Callable, Dict, NamedTuple, Optional

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

__all__ = ['Unpickler', 'load', 'finalize', 'ForbiddenGlobalError',
           'MalformedCheckpointError']

# numpy dtype kinds rebuilt: booleans, signed / unsigned integers, floats, complex
_NUMPY_KINDS = 'biufc'
# mmengine registers these statistics methods on HistoryBuffer by default; the
# pickle of a HistoryBuffer refers to them as getattr(HistoryBuffer, name)
_HISTORY_STATISTICS = ('min', 'max', 'current', 'mean')
_HISTORY_MODULE = HistoryBuffer.__module__


class ForbiddenGlobalError(pickle.UnpicklingError):
    """The pickle needs a Python object outside the allow-list (it could run code);
    ``global_name`` names it, e.g. ``'posix.system'``."""

    def __init__(self, global_name: str, detail: str = ''):
        self.global_name = global_name
        super().__init__(f'it needs the Python global {global_name!r}'
                         + (f' ({detail})' if detail else '')
                         + ', which mmsmlp\'s checkpoint reader does not allow')


class MalformedCheckpointError(pickle.UnpicklingError):
    """The pickle uses allowed objects in a way no checkpoint writer does (a
    crafted or corrupt file): wrong arguments, tensors outside their storage,
    storage records of another size than declared, objects that are not data."""


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _element_size(dtype) -> int:
    if not isinstance(dtype, torch.dtype):
        raise MalformedCheckpointError(f'a storage has dtype {dtype!r}, not a torch '
                                       'dtype')
    return torch.empty((), dtype=dtype).element_size()


# --------------------------------------------------------------------- stand-ins
class _StandIn:
    """Built by the unpickler in place of a real object; :func:`finalize` checks
    its state and builds the real object, after the last pickle opcode ran."""
    __slots__ = ('state', 'args')
    __hash__ = None  # never a dict key or a set member: finalize finds them all

    def __new__(cls, *args):
        # called with the arguments by REDUCE, without them by NEWOBJ (which does
        # not call __init__)
        self = super().__new__(cls)
        self.args = args
        self.state = None
        return self

    def __init__(self, *args):
        pass

    def __setstate__(self, state):
        # the BUILD opcode; on the class itself (not an instance) this is called
        # with one argument and fails, so the class cannot be modified either
        self.state = state

    def resolve(self, where: str, walk: Callable[[Any, str], Any]):
        raise NotImplementedError


def _malformed(where: str, what: str, got) -> MalformedCheckpointError:
    shown = repr(got)
    shown = shown if len(shown) <= 120 else shown[:117] + '...'
    return MalformedCheckpointError(f'{where}: {what}, got {shown}')


class _DtypeStandIn(_StandIn):
    """``numpy.dtype(typestr, align, copy)`` followed by BUILD with the dtype's
    state ``(version, byteorder, subarray, names, fields, ...)``."""
    __slots__ = ()

    def resolve(self, where, walk):
        if len(self.args) != 3 or not isinstance(self.args[0], str):
            raise _malformed(where, 'numpy.dtype expects (typestr, align, copy)',
                             self.args)
        try:
            dtype = np.dtype(self.args[0])
        except (TypeError, ValueError, SyntaxError) as err:
            raise _malformed(where, f'not a numpy dtype ({err})', self.args[0])
        if dtype.kind not in _NUMPY_KINDS or dtype.fields is not None \
                or dtype.subdtype is not None:
            raise _malformed(where, 'only numpy dtypes of booleans and numbers are '
                             'read', dtype)
        state = self.state
        if state is not None:
            if not (isinstance(state, tuple) and len(state) >= 5
                    and state[1] in ('<', '>', '|', '=')
                    and all(s is None for s in state[2:5])):
                raise _malformed(where, 'numpy dtype state (version, byteorder, '
                                 'None, None, None, ...) expected', state)
            if state[1] in '<>':
                dtype = dtype.newbyteorder(state[1])
        return dtype


def _resolve_dtype(value, where, walk) -> np.dtype:
    if not isinstance(value, _DtypeStandIn):
        raise _malformed(where, 'a numpy dtype was expected', value)
    return walk(value, where)


class _ArrayStandIn(_StandIn):
    """``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')`` followed by BUILD
    with ``(1, shape, dtype, is_fortran, raw_bytes)``."""
    __slots__ = ()

    def resolve(self, where, walk):
        if not (len(self.args) == 3 and self.args[0] is _NDARRAY
                and self.args[1] == (0, ) and self.args[2] == b'b'):
            raise _malformed(where, '_reconstruct expects (numpy.ndarray, (0,), '
                             "b'b')", self.args)
        state = self.state
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
            raise _malformed(where, 'numpy array state (1, shape, dtype, '
                             'is_fortran, data) expected', state)
        _, shape, dtype, fortran, data = state
        if not (isinstance(shape, tuple) and all(_int(s) and s >= 0 for s in shape)):
            raise _malformed(where, 'an array shape must be a tuple of sizes', shape)
        dtype = _resolve_dtype(dtype, where, walk)  # first: object arrays hold lists
        if not isinstance(fortran, bool) or not isinstance(data, (bytes, bytearray)):
            raise _malformed(where, 'array order (bool) and raw data (bytes) '
                             'expected', (fortran, type(data).__name__))
        if len(data) != math.prod(shape) * dtype.itemsize:
            raise _malformed(where, f'an array of shape {shape} and dtype {dtype} '
                             f'needs {math.prod(shape) * dtype.itemsize} bytes',
                             f'{len(data)} bytes')
        flat = np.frombuffer(bytes(data), dtype=dtype)
        return flat.reshape(shape, order='F' if fortran else 'C').copy(order='K')


class _ScalarStandIn(_StandIn):
    """``numpy.core.multiarray.scalar(dtype, raw_bytes)``."""
    __slots__ = ()

    def resolve(self, where, walk):
        if len(self.args) != 2 or self.state is not None:
            raise _malformed(where, 'numpy scalar expects (dtype, data)', self.args)
        dtype = _resolve_dtype(self.args[0], where, walk)
        data = self.args[1]
        if not isinstance(data, (bytes, bytearray)) or len(data) != dtype.itemsize:
            raise _malformed(where, f'a numpy {dtype} scalar needs {dtype.itemsize} '
                             'bytes', data)
        return np.frombuffer(bytes(data), dtype=dtype)[0]


class _HistoryBufferStandIn(_StandIn):
    """mmengine's ``HistoryBuffer``: NEWOBJ then BUILD with its ``__dict__``
    (``max_length``, ``_log_history``, ``_count_history`` and the
    ``statistics_methods`` its ``__getstate__`` adds). Rebuilt with
    ``HistoryBuffer(log_history, count_history, max_length)``: mmengine's own
    ``__setstate__`` would register whatever the pickle names as statistics
    methods of every HistoryBuffer of the process."""
    __slots__ = ()
    _FIELDS = ('max_length', '_log_history', '_count_history')

    def resolve(self, where, walk):
        state = self.state
        if self.args or not isinstance(state, dict) or not all(
                isinstance(k, str) for k in state):
            raise _malformed(where, 'HistoryBuffer state (a dict) expected', state)
        unknown = set(state) - set(self._FIELDS) - {'statistics_methods'}
        missing = [k for k in self._FIELDS if k not in state]
        if unknown or missing:
            raise _malformed(where, f'HistoryBuffer state has the fields '
                             f'{list(self._FIELDS)}; missing {missing}, unknown',
                             sorted(unknown))
        methods = state.get('statistics_methods', {})
        if not isinstance(methods, dict) or any(
                not isinstance(m, _StatisticsMethod) or m.name != k
                for k, m in methods.items()):
            raise _malformed(where, 'HistoryBuffer statistics_methods must map '
                             f'names to HistoryBuffer\'s own {_HISTORY_STATISTICS}',
                             methods)
        max_length = state['max_length']
        if not _int(max_length) or max_length <= 0:
            raise _malformed(where, 'max_length must be a positive int', max_length)
        logs = walk(state['_log_history'], f'{where}._log_history')
        counts = walk(state['_count_history'], f'{where}._count_history')
        for name, arr in (('_log_history', logs), ('_count_history', counts)):
            if not (isinstance(arr, np.ndarray) and arr.ndim == 1
                    and arr.dtype.kind in 'biuf'):
                raise _malformed(f'{where}.{name}', 'a 1-D numeric numpy array '
                                 'expected', arr)
        if len(logs) != len(counts):
            raise _malformed(where, 'log and count histories differ in length',
                             (len(logs), len(counts)))
        return HistoryBuffer(logs, counts, max_length)


class _NamespaceStandIn(_StandIn):
    """``argparse.Namespace``: NEWOBJ then BUILD with its attributes."""
    __slots__ = ()

    def resolve(self, where, walk):
        state = {} if self.state is None else self.state
        if self.args or not isinstance(state, dict) or not all(
                isinstance(k, str) for k in state):
            raise _malformed(where, 'Namespace attributes (a dict of names) '
                             'expected', state)
        return argparse.Namespace(
            **{k: walk(v, f'{where}.{k}') for k, v in state.items()})


class _StatisticsMethod(NamedTuple):
    """``getattr(HistoryBuffer, name)`` for a default statistics method: a token
    (immutable) checked by the HistoryBuffer it belongs to."""
    name: str


class _Sentinel(NamedTuple):
    """An allowed name that is only an argument of another one (never callable,
    never instantiable by NEWOBJ)."""
    name: str


_NDARRAY = _Sentinel('numpy.ndarray')


# -------------------------------------------------------------- allowed callables
def _check_hooks(hooks, where):
    if not (isinstance(hooks, dict) and not hooks):
        raise _malformed(where, 'tensors are saved without backward hooks (an empty '
                         'OrderedDict)', hooks)


class _Storages:
    """The storages torch's persistent_load read for one unpickler, each with its
    checked size and a view of all of it, taken before the pickle can touch the
    storage object (BUILD could change its attributes)."""

    def __init__(self):
        self.known: Dict[int, tuple] = {}  # id -> (storage, untyped, dtype, nbytes)

    def add(self, storage, nbytes: int):
        dtype = getattr(storage, 'dtype', None)
        elsize = _element_size(dtype)
        known = self.known.get(id(storage))
        if known is not None and known[0] is storage:  # the same record again
            self.known[id(storage)] = known[:3] + (min(nbytes, known[3]), )
            return
        whole = torch.empty((0, ), dtype=dtype).set_(storage, 0,
                                                     (nbytes // elsize, ), (1, ))
        self.known[id(storage)] = (storage, whole.untyped_storage(), dtype, nbytes)

    def tensor(self, args, where):
        """``_rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
        backward_hooks[, metadata])`` from checked arguments."""
        if len(args) not in (6, 7):
            raise _malformed(where, '6 or 7 arguments expected', len(args))
        storage, offset, size, stride, requires_grad, hooks = args[:6]
        metadata = args[6] if len(args) == 7 else None
        known = self.known.get(id(storage))
        if known is None or known[0] is not storage:
            raise _malformed(where, 'tensor data must be a storage of the archive',
                             type(storage).__name__)
        _, untyped, dtype, nbytes = known
        if not (_int(offset) and offset >= 0 and isinstance(size, tuple)
                and isinstance(stride, tuple) and len(size) == len(stride)
                and all(_int(v) and v >= 0 for v in size + stride)):
            raise _malformed(where, 'offset, size and stride must be non-negative '
                             'ints', (offset, size, stride))
        if all(size):  # an empty tensor reads nothing
            last = offset + sum((n - 1) * s for n, s in zip(size, stride))
            needed = (last + 1) * _element_size(dtype)
            if needed > nbytes:
                raise MalformedCheckpointError(
                    f'{where}: a tensor of size {tuple(size)} needs {needed} bytes '
                    f'of its storage, which holds {nbytes}')
        if not isinstance(requires_grad, bool) or metadata not in (None, {}):
            # torch saves metadata only for lazily conjugated / negated views,
            # which a model's weights never are
            raise _malformed(where, 'requires_grad (bool) and no tensor metadata '
                             'expected', (requires_grad, metadata))
        _check_hooks(hooks, where)
        # what torch's rebuild does, on the storage as it was read
        tensor = torch.empty((0, ), dtype=dtype, device=untyped.device).set_(
            untyped, offset, tuple(size), tuple(stride))
        return tensor.requires_grad_(requires_grad)


class _TensorStandIn(_StandIn):
    """``torch._utils._rebuild_tensor_v2(...)``: built by :func:`finalize`, after
    the last opcode, so that no BUILD reaches the tensor."""
    __slots__ = ()

    def resolve(self, where, walk):
        storages, args = self.args[0], self.args[1:]
        if self.state is not None:
            raise _malformed(where, 'a tensor has no pickled state', self.state)
        return storages.tensor(args, where)


class _ParameterStandIn(_StandIn):
    """``torch._utils._rebuild_parameter(tensor, requires_grad, hooks)``."""
    __slots__ = ()

    def resolve(self, where, walk):
        if len(self.args) != 3 or self.state is not None \
                or not isinstance(self.args[0], _TensorStandIn) \
                or not isinstance(self.args[1], bool):
            raise _malformed(where, '_rebuild_parameter expects (tensor, '
                             'requires_grad, hooks)', self.args)
        _check_hooks(self.args[2], where)
        return torch.nn.Parameter(walk(self.args[0], where), self.args[1])


def _codecs_encode(*args):
    # protocol 2 writes bytes as _codecs.encode(text, 'latin1')
    if len(args) != 2 or not isinstance(args[0], str) \
            or args[1] not in ('latin1', 'latin-1'):
        raise ForbiddenGlobalError('_codecs.encode', 'only as encode(text, '
                                   f"'latin1') for bytes; got {args!r:.120}")
    return args[0].encode('latin1')


def _empty_bytes(*args):
    # protocol 2 writes b'' as bytes(); bytes(n) would allocate n bytes
    if args:
        raise ForbiddenGlobalError('builtins.bytes', 'only as bytes() for b""; got '
                                   f'{args!r:.120}')
    return b''


def _getattr(*args):
    if len(args) == 2 and args[0] is _HistoryBufferStandIn \
            and args[1] in _HISTORY_STATISTICS:
        return _StatisticsMethod(args[1])
    shown = ', '.join(
        'HistoryBuffer' if a is _HistoryBufferStandIn else repr(a)[:60] for a in args)
    raise ForbiddenGlobalError(
        'builtins.getattr', f'getattr({shown}) is refused: only '
        f'getattr(HistoryBuffer, name) for name in {_HISTORY_STATISTICS} is allowed')


def _new(cls, *first):
    """A fresh function per use that builds a stand-in (``cls(*first, *args)``): a
    pickle can set the attributes of a function it is given; these are used once
    and dropped."""
    def build(*args):
        return cls(*first, *args)
    return build


def _fresh(fn):
    def call(*args):
        return fn(*args)
    return call


def _allowed(storages: _Storages) -> Dict[tuple, Callable[[], Any]]:
    """``(module, name) -> factory`` of what the pickle gets for that global."""
    table = {
        ('collections', 'OrderedDict'): lambda: OrderedDict,
        ('torch', 'Size'): lambda: torch.Size,
        ('torch', 'device'): lambda: torch.device,
        ('torch._utils', '_rebuild_tensor_v2'):
            lambda: _new(_TensorStandIn, storages),
        ('torch._utils', '_rebuild_parameter'): lambda: _new(_ParameterStandIn),
        ('_codecs', 'encode'): lambda: _fresh(_codecs_encode),
        ('numpy', 'dtype'): lambda: _new(_DtypeStandIn),
        ('numpy', 'ndarray'): lambda: _NDARRAY,
        ('argparse', 'Namespace'): lambda: _NamespaceStandIn,
        (_HISTORY_MODULE, 'HistoryBuffer'): lambda: _HistoryBufferStandIn,
    }
    for builtins in ('builtins', '__builtin__'):  # protocol 2 writes __builtin__
        table[(builtins, 'set')] = lambda: set
        table[(builtins, 'frozenset')] = lambda: frozenset
        table[(builtins, 'complex')] = lambda: complex
        table[(builtins, 'bytes')] = lambda: _fresh(_empty_bytes)
        table[(builtins, 'getattr')] = lambda: _fresh(_getattr)
    for numpy_core in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        table[(numpy_core, '_reconstruct')] = lambda: _new(_ArrayStandIn)
        table[(numpy_core, 'scalar')] = lambda: _new(_ScalarStandIn)
    for name in _HISTORY_STATISTICS:  # protocol >= 4 names them directly
        table[(_HISTORY_MODULE, f'HistoryBuffer.{name}')] = \
            lambda name=name: _StatisticsMethod(name)
    return table


_DTYPES = {name: value for name, value in vars(torch).items()
           if isinstance(value, torch.dtype)}


# ---------------------------------------------------------------------- unpickler
class Unpickler(pickle.Unpickler):
    """A pickle ``Unpickler`` that resolves only the allowed globals (see the
    module docstring) and checks every storage torch's ``persistent_load`` reads.

    Args:
        file: the pickle stream.
        records (dict, optional): for a zip checkpoint, the size in bytes of each
            record, by its name inside the archive (``'data/0'``): a storage must
            declare exactly the size of its record.
        file_size (int, optional): for a legacy (non-zip) checkpoint, the file's
            size: no storage may be larger.
        **kwargs: passed to :class:`pickle.Unpickler` (torch passes ``encoding``).
    """

    def __init__(self, file, *, records: Optional[Dict[str, int]] = None,
                 file_size: Optional[int] = None, **kwargs):
        for klass in type(self).__mro__:
            if klass is Unpickler:
                break
            if 'persistent_load' in vars(klass):
                # a persistent_load defined on a subclass would bypass the storage
                # checks below: fail closed rather than load unchecked storages
                raise RuntimeError('mmsmlp.utils.safe_unpickler: torch defines '
                                   'persistent_load on its Unpickler subclass; this '
                                   'torch release is not supported')
        super().__init__(file, **kwargs)
        self._records = records
        self._file_size = file_size
        self._storages = _Storages()
        self._table = _allowed(self._storages)

    def __setattr__(self, name, value):
        # torch sets ``unpickler.persistent_load = <its storage loader>``
        if name == 'persistent_load':
            value = self._checked_persistent_load(value)
        super().__setattr__(name, value)

    def _checked_persistent_load(self, load_storage):
        def persistent_load(pid):
            nbytes = self._check_pid(pid)
            storage = load_storage(pid)
            self._storages.add(storage, nbytes)
            return storage
        return persistent_load

    def _check_pid(self, pid) -> int:
        """Size in bytes of the storage ``pid`` names, checked against the file."""
        where = 'storage'
        if not (isinstance(pid, tuple) and pid and pid[0] in ('storage', b'storage')):
            raise _malformed(where, "a persistent id ('storage', ...) expected", pid)
        if self._records is not None:  # zip: (tag, type, key, location, numel)
            if len(pid) != 5:
                raise _malformed(where, 'a storage id of 5 fields expected', pid)
            _, storage_type, key, location, numel = pid
            view = None
        else:  # legacy: (tag, type, key, location, numel, view)
            if len(pid) != 6:
                raise _malformed(where, 'a storage id of 6 fields expected', pid)
            _, storage_type, key, location, numel, view = pid
        if not (isinstance(key, str) and isinstance(location, (str, bytes))
                and _int(numel) and numel >= 0):
            raise _malformed(where, 'storage key, location and size expected',
                             (key, location, numel))
        nbytes = numel * _element_size(getattr(storage_type, 'dtype', None))
        if self._records is not None:
            record = f'data/{key}'
            if self._records.get(record) != nbytes:
                held = self._records.get(record)
                raise MalformedCheckpointError(
                    f'the pickle declares {nbytes} bytes for the record {record!r}, '
                    + ('which the archive does not have' if held is None
                       else f'which holds {held}'))
            return nbytes
        if self._file_size is None or nbytes > self._file_size:
            raise MalformedCheckpointError(
                f'storage {key!r} declares {nbytes} bytes, more than the file '
                f'holds ({self._file_size})')
        if view is None:
            return nbytes
        if not (isinstance(view, tuple) and len(view) == 3 and isinstance(view[0], str)
                and _int(view[1]) and _int(view[2]) and view[1] >= 0
                and view[2] >= 0 and view[1] + view[2] <= numel):
            raise _malformed(f'storage {key!r}', f'a view (key, offset, size) inside '
                             f'its {numel} elements expected', view)
        return view[2] * (nbytes // numel if numel else 0)

    def find_class(self, module, name):
        factory = self._table.get((module, name))
        if factory is not None:
            return factory()
        if module == 'torch' and name in _DTYPES:
            return _DTYPES[name]
        raise ForbiddenGlobalError(f'{module}.{name}')


def load(file, **kwargs):
    """``pickle.load`` with :class:`Unpickler` (torch reads the small header
    pickles of legacy checkpoints with it)."""
    return Unpickler(file, **kwargs).load()


# ----------------------------------------------------------------------- finalize
_LEAVES = (type(None), bool, int, float, complex, str, bytes, bytearray,
           torch.dtype, torch.device, torch.Size)
_TENSORS = (torch.Tensor, torch.nn.Parameter)


def _check_key(key, where):
    if type(key) in _LEAVES or type(key) in _TENSORS:
        return
    if type(key) in (tuple, frozenset):
        for k in key:
            _check_key(k, where)
        return
    raise _malformed(where, 'dict keys and set members must be plain values', key)


def finalize(obj, where: str = 'checkpoint'):
    """Replace the stand-ins of an unpickled checkpoint by real objects (numpy
    arrays, scalars and dtypes, HistoryBuffers, Namespaces), in place where the
    containers allow it, and check that everything else is data.

    Raises:
        MalformedCheckpointError: a stand-in with invalid state, or an object
            that is not checkpoint data (a class, a function), named by where it
            sits, e.g. ``checkpoint['meta']['x']``.
    """
    memo: Dict[int, Any] = {}

    def walk(value, here):
        kind = type(value)
        if kind in _LEAVES or kind in _TENSORS:
            return value
        if id(value) in memo:
            return memo[id(value)]
        if isinstance(value, _StandIn):
            memo[id(value)] = real = value.resolve(here, walk)
            return real
        if kind is dict or kind is OrderedDict:
            memo[id(value)] = value
            changed = {}
            for k, v in value.items():
                _check_key(k, here)
                new = walk(v, f'{here}[{k!r}]')
                if new is not v:
                    changed[k] = new
            value.update(changed)
            if kind is OrderedDict:  # e.g. the _metadata of a state dict
                attrs = vars(value)
                for k, v in list(attrs.items()):
                    attrs[k] = walk(v, f'{here}.{k}')
            return value
        if kind is list:
            memo[id(value)] = value
            for i, v in enumerate(value):
                new = walk(v, f'{here}[{i}]')
                if new is not v:
                    value[i] = new
            return value
        if kind is tuple:
            memo[id(value)] = value
            items = [walk(v, f'{here}[{i}]') for i, v in enumerate(value)]
            if any(a is not b for a, b in zip(items, value)):
                memo[id(value)] = value = tuple(items)
            return value
        if kind in (set, frozenset):
            for v in value:
                _check_key(v, here)
            return value
        raise _malformed(here, 'only data (containers, numbers, strings, tensors, '
                         'numpy values, HistoryBuffers, Namespaces) is read',
                         f'a {kind.__module__}.{kind.__qualname__}: {value!r:.80}')

    try:
        return walk(obj, where)
    except RecursionError:
        raise MalformedCheckpointError(f'{where} is nested too deeply to be '
                                       'checkpoint data') from None
