"""Checkpoints that are never half-written, and old ones removed only after the new
one is complete.

mmengine's :class:`~mmengine.hooks.CheckpointHook` removes the oldest kept
checkpoint *before* saving the new one (``max_keep_ckpts``), and its local file
backend writes the checkpoint in place: a run killed while saving leaves a
truncated file and, with ``max_keep_ckpts=1``, no complete checkpoint at all.

:class:`AtomicCheckpointHook` is that hook with two changes, made through mmengine's
public extension points (a registered file backend, the hook's public methods):

* on a local ``out_dir`` it saves through :class:`AtomicLocalBackend`, which writes
  each file to a temporary file in the same folder, flushes and fsyncs it, and
  renames it onto its name (``os.replace``): the name holds either the previous
  file or the complete new one, never part of one;
* the removals the hook makes while saving (the checkpoint beyond
  ``max_keep_ckpts``, the previous best checkpoint) wait until the new checkpoint
  and the ``last_checkpoint`` pointer are written, and are dropped if saving fails.
"""
import os
import os.path as osp
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, Union

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, get_file_backend, register_backend
from mmengine.hooks import CheckpointHook
from mmengine.utils import mkdir_or_exist

from mmsmlp.registry import HOOKS

#: Ends the name of a file being written; such a file is never a checkpoint
#: (not ``*.pth``) and is what a run killed while saving leaves behind.
PARTIAL_SUFFIX = '.partial'


def _partial_name(path: str) -> str:
    """A new hidden name next to ``path``, e.g. ``.epoch_3.pth.<pid>-<hex>.partial``."""
    folder, name = osp.split(path)
    return osp.join(folder, f'.{name}.{os.getpid()}-{secrets.token_hex(4)}'
                    f'{PARTIAL_SUFFIX}')


def _fsync_folder(folder: str) -> None:
    # makes the rename itself durable (POSIX); Windows cannot open a folder
    if os.name != 'posix':
        return
    fd = os.open(folder or '.', os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(data: bytes, path: Union[str, Path]) -> None:
    """Write ``data`` to ``path`` so that ``path`` never holds part of it.

    The bytes go to a temporary file in the same folder (see :data:`PARTIAL_SUFFIX`),
    which is flushed, fsynced and renamed onto ``path``. On any error, including
    ``KeyboardInterrupt``, the temporary file is removed and ``path`` is left as it
    was. A process killed before the rename leaves only the temporary file.
    """
    path = str(path)
    folder = osp.dirname(osp.abspath(path))
    mkdir_or_exist(folder)
    tmp = _partial_name(osp.join(folder, osp.basename(path)))
    # os.open with mode 0o666 lets the umask decide the permissions, as open() does
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_BINARY', 0),
                 0o666)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(folder)


def partial_files(folder: str) -> List[str]:
    """The temporary files of unfinished :func:`write_atomically` calls in
    ``folder`` (left by a killed process), sorted."""
    if not osp.isdir(folder):
        return []
    return sorted(osp.join(folder, f) for f in os.listdir(folder)
                  if f.startswith('.') and f.endswith(PARTIAL_SUFFIX))


@register_backend('mmsmlp_atomic_local')
class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose ``put`` / ``put_text`` write atomically
    (:func:`write_atomically`) and whose removals can wait
    (:meth:`removals_deferred`). Registered as backend ``'mmsmlp_atomic_local'``
    (``backend_args=dict(backend='mmsmlp_atomic_local')``)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._deferred: Optional[List[str]] = None

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        write_atomically(obj, filepath)

    def put_text(self, obj: str, filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        write_atomically(obj.encode(encoding), filepath)

    def remove(self, filepath: Union[str, Path]) -> None:
        if self._deferred is None:
            super().remove(filepath)
        else:
            self._deferred.append(str(filepath))

    def rmtree(self, dir_path: Union[str, Path]) -> None:
        if self._deferred is None:
            super().rmtree(dir_path)
        else:
            self._deferred.append(str(dir_path))

    @contextmanager
    def removals_deferred(self, keep=()) -> Iterator[None]:
        """Hold back :meth:`remove` / :meth:`rmtree` until the block ends; then
        remove what was asked, except the paths in ``keep`` and those gone by then.
        If the block raises, nothing is removed."""
        if self._deferred is not None:  # nested: the outer block removes
            yield
            return
        self._deferred = []
        try:
            yield
            pending = self._deferred
        finally:
            self._deferred = None
        kept = {osp.abspath(str(p)) for p in (keep() if callable(keep) else keep) if p}
        for path in pending:
            if osp.abspath(path) in kept:
                continue
            if self.isfile(path):
                self.remove(path)
            elif self.isdir(path):
                self.rmtree(path)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """:class:`~mmengine.hooks.CheckpointHook` whose checkpoints are never
    half-written and whose removals of old checkpoints wait until the new one is
    complete (see the module docstring). Takes every argument of CheckpointHook.

    On a local ``out_dir`` (or work dir) without ``backend_args``, checkpoints are
    written through :class:`AtomicLocalBackend`; other storage backends (object
    stores, whose uploads do not leave partial objects) and the deprecated
    ``file_client_args`` are used as they are. Before training it removes the
    temporary files a killed run left in the checkpoint folder.

    The ``last_checkpoint`` pointer is written by mmengine in place; a run killed
    in the instant it is written may leave it empty, and mmsmlp's
    ``tools/train.py --resume`` then picks the newest loadable checkpoint instead.
    """

    def before_train(self, runner) -> None:
        out_dir = self.out_dir if self.out_dir is not None else runner.work_dir
        if self._is_plain_local(out_dir):
            if self.file_client_args is None:
                self.backend_args = dict(backend='mmsmlp_atomic_local')
            else:
                runner.logger.warning(
                    'AtomicCheckpointHook: with file_client_args (deprecated) '
                    'checkpoints are written in place, not atomically; use '
                    'backend_args')
        super().before_train(runner)
        if is_main_process() and isinstance(self.file_backend, AtomicLocalBackend):
            stale = partial_files(str(self.out_dir))
            for path in stale:
                os.remove(path)
            if stale:
                runner.logger.info(
                    f'removed {len(stale)} unfinished checkpoint write(s) of an '
                    f'interrupted run: {[osp.basename(p) for p in stale]}')

    def _is_plain_local(self, out_dir) -> bool:
        """Whether checkpoints would go through mmengine's plain LocalBackend."""
        args = self.backend_args or {}
        if set(args) - {'backend'} or args.get('backend', 'local') != 'local':
            return False
        return type(get_file_backend(str(out_dir), backend_args=args)) is LocalBackend

    def _kept_paths(self) -> List[str]:
        """The checkpoints the hook refers to now, which are never removed."""
        paths = [self.last_ckpt, getattr(self, 'best_ckpt_path', None)]
        paths += list(getattr(self, 'best_ckpt_path_dict', {}).values())
        return [str(p) for p in paths if p]

    @contextmanager
    def _removals_after_saving(self) -> Iterator[None]:
        backend = getattr(self, 'file_backend', None)
        if isinstance(backend, AtomicLocalBackend):
            with backend.removals_deferred(keep=self._kept_paths):
                yield
        else:
            yield

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        with self._removals_after_saving():
            super().after_train_iter(runner, batch_idx, data_batch, outputs)

    def after_train_epoch(self, runner) -> None:
        with self._removals_after_saving():
            super().after_train_epoch(runner)

    def after_val_epoch(self, runner, metrics) -> None:
        with self._removals_after_saving():
            super().after_val_epoch(runner, metrics)
