"""Reading checkpoints, and the helpers shared by every checkpoint converter of
mmsmlp (``tools/model_converters``).

mmsmlp's converters and tools read checkpoints with :func:`read_checkpoint`, and
importing this module registers it with mmengine's ``CheckpointLoader`` for local
files, ``http(s)://`` URLs and the model-zoo names that resolve to URLs
(``torchvision://``, ``modelzoo://``, ``open-mmlab://``, ``openmmlab://``,
``mmcls://``), so that ``init_cfg=dict(type='Pretrained', ...)``, ``load_from``,
``resume`` and ``mmengine.runner.load_checkpoint`` use it too (``pavi://``,
``s3://`` and ``petrel://`` keep mmengine's loaders, which need services mmsmlp
cannot test). It never runs code from a file, whatever torch's default or the
``TORCH_FORCE_*WEIGHTS_ONLY_LOAD`` variables say (see
:mod:`mmsmlp.utils.safe_unpickler`), and refuses corrupt files.

A converter is three steps, one helper each:

1. :func:`load_state_source` reads the source file with :func:`read_checkpoint` and
   refuses weights that are NaN or infinite. Every failure (missing, empty,
   truncated, corrupt, unsafe file, missing entry) becomes one clear error naming
   the file.
2. :func:`rename_keys` maps the source keys with a list of :class:`KeyRule` and
   fails on any source key that no rule consumed: a converter never drops a tensor
   silently.
3. :func:`save_converted_checkpoint` writes ``{'meta': ..., 'state_dict': ...}`` (the
   mmengine layout read by ``mmengine.runner.load_checkpoint``) atomically: to a
   temporary file in the destination folder, then renamed, so that an interrupted
   conversion leaves no half-written checkpoint behind.
"""
import os
import os.path as osp
import pickle
import re
import tarfile
import tempfile
import zipfile
import zlib
from collections import OrderedDict
from typing import (Any, Callable, Dict, Iterable, Mapping, NamedTuple, Optional,
                    Sequence, Tuple, Union)
from urllib.parse import urlparse

import torch
from mmengine.runner import CheckpointLoader
from mmengine.utils import mkdir_or_exist

from . import safe_unpickler

__all__ = [
    'CheckpointError', 'KeyRule', 'read_checkpoint', 'check_finite',
    'check_against_model',
    'load_state_source',
    'rename_keys', 'conv1x1_to_linear', 'save_converted_checkpoint'
]

_MAX_LISTED = 20  # keys named in one error message
_ZIP_MAGIC = b'PK\x03\x04'  # what torch.load tests to choose its zip reader
_TRUE = ('1', 'y', 'yes', 'true')  # how torch reads its TORCH_FORCE_* variables
_CHUNK = 1 << 20


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
    # torch >= 2.4: '... GLOBAL posix.system ...'; torch 2.1: 'Unsupported class
    # posix.system'
    found = re.search(r'(?:GLOBAL|Unsupported class)\s+(\S+?)(?:\s|$)', msg)
    if found:
        return f'it needs the Python global {found.group(1)!r}'
    found = re.search(r'WeightsUnpickler error:\s*(\S[^\n]*)', msg)
    return found.group(1).strip() if found else 'unsupported pickle content'


def _env_true(name: str) -> bool:
    return os.getenv(name, '0').lower() in _TRUE


def _zip_records(f, path: str) -> Dict[str, int]:
    """Check the zip archive ``f`` before anything in it is unpickled: it must be
    complete, every record must match its CRC-32, and it must not be TorchScript.
    Returns the size of each record by its name inside the archive's folder."""
    try:
        archive = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, EOFError, ValueError) as err:
        raise CheckpointError(
            f'checkpoint file {path!r} starts like a zip archive (the format of '
            f'torch.save) but cannot be opened as one ({err}): it is truncated or '
            'corrupt. Download or save it again.') from None
    with archive:
        infos = archive.infolist()
        # torch.save puts every record in one folder named after the file
        records = {i.filename.split('/', 1)[-1]: i.file_size for i in infos}
        if len(records) != len(infos):  # zip readers differ on which one counts
            raise CheckpointError(
                f'checkpoint file {path!r} is corrupt or crafted: its zip archive '
                'holds several records of the same name')
        if 'constants.pkl' in records:
            raise CheckpointError(
                f'checkpoint file {path!r} is a TorchScript archive '
                '(torch.jit.save), which torch.load hands to torch.jit.load: its '
                'code is not run and it was not loaded. Save the state dict '
                '(torch.save(model.state_dict(), ...)) and load that.')
        if 'data.pkl' not in records:
            raise CheckpointError(
                f'checkpoint file {path!r} is a zip archive without a data.pkl '
                f'record, not a file written by torch.save (records: '
                f'{_list_keys(sorted(records))})')
        if all(i.CRC == 0 for i in infos if i.file_size):
            from mmengine.logging import print_log
            print_log(f'checkpoint file {path!r} was saved without CRC-32 checksums '
                      '(torch.serialization.set_crc32_options(False)): its integrity '
                      'cannot be verified', logger='current', level=30)
            return records
        for info in infos:
            try:
                with archive.open(info) as record:
                    while record.read(_CHUNK):  # zipfile checks the CRC-32 at the end
                        pass
            except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as err:
                what = ('does not match its CRC-32 checksum (bytes changed on disk '
                        'or in transfer)') if 'CRC' in str(err) else \
                    f'cannot be read ({type(err).__name__}: {err})'
                raise CheckpointError(
                    f'checkpoint file {path!r} is corrupt: its record '
                    f'{info.filename!r} {what}. Download or save it again.') from None
    return records


def _is_tar(f) -> bool:
    start = f.tell()
    try:
        with tarfile.open(fileobj=f, mode='r:'):
            return True
    except tarfile.TarError:
        return False
    finally:
        f.seek(start)


def read_checkpoint(path: Union[str, os.PathLike], map_location: Any = 'cpu'):
    """Load a checkpoint file without running code from it, refusing corrupt files.

    1. A zip archive (what ``torch.save`` writes) is checked before anything is
       unpickled: complete, every record matching its CRC-32 (files saved with
       ``torch.serialization.set_crc32_options(False)`` hold no checksums: they
       load with a warning that they cannot be verified), and not TorchScript
       (``torch.load`` would hand it to ``torch.jit.load``).
    2. ``torch.load(f, map_location, pickle_module=mmsmlp.utils.safe_unpickler,
       weights_only=False)`` unpickles with an allow-list of tensors, containers,
       numpy values, mmengine's ``HistoryBuffer`` and ``argparse.Namespace`` (see
       :mod:`mmsmlp.utils.safe_unpickler`): stock mmengine checkpoints (message
       hub included) and official sMLPNet / timm checkpoints load, a pickle that
       names anything else is refused. Every storage must have the size of its
       record and every tensor must lie inside its storage.
       ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` changes nothing (the choice is explicit
       here); with ``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1`` torch refuses a pickle
       module, and the file goes through torch's own ``weights_only`` loader
       instead (after step 1), which refuses HistoryBuffers and Namespaces.

    Legacy files (``torch.save(..., _use_new_zipfile_serialization=False)``, torch
    < 1.6) hold no checksums: they get step 2 (every storage must fit in the file,
    whose bytes torch reads), but flipped bytes inside tensor data go unnoticed
    (the NaN / Inf checks of :func:`load_state_source` and of the backbones catch
    some). The tar format of the first torch releases is refused.

    Args:
        path (str | PathLike): the file.
        map_location: as for ``torch.load``. Defaults to ``'cpu'``.

    Returns:
        The loaded object (real numpy values, HistoryBuffers and Namespaces).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: naming the file: empty, truncated, corrupt (the bad
            record named), TorchScript or tar, refused for safety (the Python
            global it needs named), or not readable by ``torch.load``.
    """
    path = osp.expanduser(os.fspath(path))
    if not osp.exists(path):
        raise FileNotFoundError(f'checkpoint file {path!r} does not exist')
    if osp.isdir(path):
        raise CheckpointError(f'{path!r} is a directory, not a checkpoint file')
    size = osp.getsize(path)
    if size == 0:
        raise CheckpointError(f'checkpoint file {path!r} is empty (0 bytes); it was '
                              'probably not written completely: download or save '
                              'it again')
    force_safe = _env_true('TORCH_FORCE_WEIGHTS_ONLY_LOAD')
    if force_safe and _env_true('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'):
        raise CheckpointError(
            f'cannot read {path!r}: the environment sets both '
            'TORCH_FORCE_WEIGHTS_ONLY_LOAD and TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD; '
            'unset one (mmsmlp reads checkpoints safely without either)')
    try:
        with open(path, 'rb') as f:
            # one open file for the checks and the load: what is checked is read
            zipped = f.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC
            f.seek(0)
            if zipped:
                context = dict(records=_zip_records(f, path))
            elif _is_tar(f):
                raise CheckpointError(
                    f'checkpoint file {path!r} is a tar archive (the format of the '
                    'first torch releases), which mmsmlp does not read; load it '
                    'once in a trusted environment and save it again with '
                    'torch.save')
            else:
                context = dict(file_size=size)
            f.seek(0)
            if force_safe:
                obj = torch.load(f, map_location=map_location, weights_only=True,
                                 mmap=False)
            else:
                obj = torch.load(f, map_location=map_location,
                                 pickle_module=safe_unpickler, weights_only=False,
                                 mmap=False, **context)
        return safe_unpickler.finalize(obj)
    except (CheckpointError, OSError):
        raise  # OSError, e.g. permission denied: the message names the file
    except safe_unpickler.ForbiddenGlobalError as err:
        raise CheckpointError(
            f'checkpoint file {path!r} is refused for safety and was not loaded: '
            f'it contains Python objects other than tensors and plain data ({err}), '
            'which could run arbitrary code when unpickled. If you trust the file, '
            're-save its state dict (a dict of tensors) in a trusted environment '
            'and use that.') from err
    except safe_unpickler.MalformedCheckpointError as err:
        raise CheckpointError(
            f'checkpoint file {path!r} is refused for safety and was not loaded: it '
            f'is corrupt or crafted ({err}). Download or save it again.') from err
    except Exception as err:  # noqa: B902  torch raises many types here
        detail = _weights_only_detail(err)
        if detail is not None:
            raise CheckpointError(
                f'checkpoint file {path!r} is refused for safety and was not loaded: '
                f'it contains Python objects other than tensors ({detail}). '
                'TORCH_FORCE_WEIGHTS_ONLY_LOAD=1 is set, so torch\'s own '
                'weights_only loader read it; unset the variable to read it with '
                'mmsmlp\'s reader, which never runs code from a file either and '
                'also reads the message hub of mmengine checkpoints.') from err
        first_line = (str(err).strip().splitlines() or [''])[0][:300]
        raise CheckpointError(
            f'checkpoint file {path!r} ({size} bytes) cannot be read by torch.load '
            f'({type(err).__name__}: {first_line}): it is truncated or corrupt, or '
            'not a file written by torch.save, or map_location does not fit it. '
            'Download or save it again.') from err


def check_finite(state_dict: Mapping[str, Any], source: str,
                 keys: Optional[Iterable[str]] = None) -> None:
    """Refuse floating-point (and complex) tensors of ``state_dict`` that hold NaN
    or infinite values: the weights of a diverged run or a corrupt file.

    Args:
        state_dict (Mapping[str, Tensor]): tensors of any shape; other values and
            integer tensors are skipped.
        source (str): what to call the checkpoint in the message (e.g. the file).
        keys (Iterable[str], optional): check only these keys (those absent are
            skipped). Defaults to all.

    Raises:
        CheckpointError: naming every key with NaN / Inf values and their count.
    """
    bad = []
    for key in (state_dict if keys is None else keys):
        value = state_dict.get(key)
        if isinstance(value, torch.Tensor) and (
                value.is_floating_point() or value.is_complex()):
            count = int((~torch.isfinite(value)).sum())
            if count:
                bad.append(f'{key!r} ({count} of {value.numel()})')
    if bad:
        shown = ', '.join(bad[:_MAX_LISTED])
        more = f', ... ({len(bad) - _MAX_LISTED} more)' \
            if len(bad) > _MAX_LISTED else ''
        raise CheckpointError(
            f'{source}: {len(bad)} tensors hold NaN or infinite values: '
            f'{shown}{more}. These weights come from a run that diverged or from a '
            'corrupt file; they are not loaded.')


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
    hint: str = '',
) -> Tuple[Optional[str], 'OrderedDict[str, torch.Tensor]']:
    """Read the state dict of a source checkpoint, safely.

    The file is read with :func:`read_checkpoint` (no code runs, corrupt files
    are refused; the ``argparse.Namespace`` that DeiT-style training scripts
    store next to the weights is read as data), and the state dict must hold no
    NaN or infinite values.

    Args:
        path (str | PathLike): the source file.
        keys (Sequence[str | None]): top-level entries tried in this order; the
            first one present is returned. ``None`` stands for the loaded object
            itself, for files that hold a bare state dict (e.g. timm weights).
            Defaults to ``('model',)``.
        hint (str): appended to the error raised when no entry of ``keys`` exists.

    Returns:
        tuple: ``(key, state_dict)``: the entry used (``None`` for the object
        itself) and an ``OrderedDict`` mapping names to CPU tensors of any shape.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file is empty, truncated or corrupt; it needs Python
            objects the reader does not allow (refused, not loaded); it has none
            of ``keys`` (the keys found are listed); the entry is not a mapping of
            names to tensors; or tensors hold NaN / Inf (their keys named).
    """
    path = osp.expanduser(os.fspath(path))
    keys = tuple(keys)
    if not keys:
        raise ValueError('load_state_source: `keys` must name at least one entry')
    obj = read_checkpoint(path)
    for key in keys:
        if key is None:
            if isinstance(obj, Mapping) and obj and all(
                    isinstance(v, torch.Tensor) for v in obj.values()):
                state = _check_state_dict(obj, path, 'the top-level object')
                check_finite(state, f'checkpoint {path!r}')
                return None, state
        elif isinstance(obj, Mapping) and key in obj:
            state = _check_state_dict(obj[key], path, f'entry {key!r}')
            check_finite(state, f'entry {key!r} of checkpoint {path!r}')
            return key, state
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


# ----------------------------------------------------- mmengine's CheckpointLoader
# Registered when this module is imported (``import mmsmlp`` does): mmengine then
# reads every local and http(s) checkpoint (init_cfg Pretrained, load_from, resume,
# load_checkpoint) with read_checkpoint instead of its plain torch.load. The names
# keep mmengine's ``load_from_<scheme>`` form, which its log line shortens.

@CheckpointLoader.register_scheme(prefixes='', force=True)
def load_from_local(filename: str, map_location=None):
    """mmengine's loader of local files, through :func:`read_checkpoint`."""
    return read_checkpoint(filename, map_location=map_location)


@CheckpointLoader.register_scheme(prefixes=('http://', 'https://'), force=True)
def load_from_http(filename: str, map_location=None, model_dir: Optional[str] = None,
                   progress: bool = os.isatty(0)):
    """mmengine's loader of URLs, through :func:`read_checkpoint`: the file is
    downloaded once (``torch.hub.download_url_to_file``) into ``model_dir``
    (default: ``<torch hub dir>/checkpoints``, where mmengine caches them too),
    by the first process of a distributed run while the others wait, then read.
    """
    from mmengine.dist import barrier, get_dist_info
    name = osp.basename(urlparse(filename).path)
    if not name:
        raise CheckpointError(f'URL {filename!r} does not name a file')
    folder = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    cached = osp.join(folder, name)
    rank, world_size = get_dist_info()
    if rank == 0 and not osp.isfile(cached):
        mkdir_or_exist(folder)
        torch.hub.download_url_to_file(filename, cached, progress=progress)
    if world_size > 1:
        barrier()
    return read_checkpoint(cached, map_location=map_location)


def _zoo_url(table: Callable[[], Dict[str, str]], scheme: str, filename: str,
             renamed: Optional[Dict[str, str]] = None) -> str:
    name = filename[len(scheme):]
    if renamed and name in renamed:
        name = renamed[name]
    urls = table()
    if name not in urls:
        raise CheckpointError(f'{filename!r}: mmengine knows no model {name!r} under '
                              f'{scheme} (see {table.__module__}.{table.__name__})')
    url = urls[name]
    if not url.startswith(('http://', 'https://')):
        raise CheckpointError(f'{filename!r} names the local file {url!r} (relative '
                              "to mmengine's home): give its path instead")
    return url


@CheckpointLoader.register_scheme(prefixes=('modelzoo://', 'torchvision://'),
                                  force=True)
def load_from_torchvision(filename: str, map_location=None):
    """torchvision weights by name, from mmengine's table of URLs."""
    from mmengine.runner.checkpoint import get_torchvision_models
    scheme = 'modelzoo://' if filename.startswith('modelzoo://') else 'torchvision://'
    return load_from_http(_zoo_url(get_torchvision_models, scheme, filename),
                          map_location=map_location)


@CheckpointLoader.register_scheme(prefixes=('open-mmlab://', 'openmmlab://'),
                                  force=True)
def load_from_openmmlab(filename: str, map_location=None):
    """OpenMMLab weights by name, from mmengine's table of URLs (deprecated names
    are mapped to their successors, as mmengine does)."""
    from mmengine.runner.checkpoint import (get_deprecated_model_names,
                                            get_external_models)
    scheme = 'open-mmlab://' if filename.startswith('open-mmlab://') \
        else 'openmmlab://'
    return load_from_http(
        _zoo_url(get_external_models, scheme, filename, get_deprecated_model_names()),
        map_location=map_location)


@CheckpointLoader.register_scheme(prefixes='mmcls://', force=True)
def load_from_mmcls(filename: str, map_location=None):
    """mmcls weights by name; as mmengine does, only the backbone is returned, as
    ``{'state_dict': {name without 'backbone.': tensor}}``."""
    from mmengine.runner.checkpoint import get_mmcls_models
    ckpt = load_from_http(_zoo_url(get_mmcls_models, 'mmcls://', filename),
                          map_location=map_location)
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, Mapping) else ckpt
    if not isinstance(state, Mapping):
        raise CheckpointError(f'{filename!r} holds no state dict')
    prefix = 'backbone.'
    return dict(state_dict=OrderedDict(
        (k[len(prefix):], v) for k, v in state.items() if k.startswith(prefix)))
