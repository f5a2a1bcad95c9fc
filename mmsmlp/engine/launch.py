"""What ``tools/train.py`` and ``tools/test.py`` share: reading a config of any of
mmdet / mmseg / mmpretrain, checking the files it names before anything is written,
and adapting it to the command line (work dir, AMP, resume, CPU distributed runs)."""
import argparse
import json
import os
import os.path as osp
from typing import Iterable, List, Optional

import torch
from mmengine.config import Config, ConfigDict, DictAction

SUPPORTED_SCOPES = ('mmdet', 'mmseg', 'mmpretrain')
LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')


class ConfigError(Exception):
    """A config or a file it names is unusable; the message says which and why."""


def check_checkpoint(path: str, what: str):
    """Refuse a local checkpoint that cannot be loaded, before a Runner starts:
    missing, empty, truncated, corrupt (a record that fails its CRC-32), or
    refused for safety (see :func:`mmsmlp.utils.read_checkpoint`). URLs are read
    (and downloaded) by the Runner, through the same reader."""
    from mmsmlp.utils import CheckpointError, read_checkpoint
    if '://' in path:
        return
    try:
        read_checkpoint(path)
    except (CheckpointError, OSError) as e:
        raise ConfigError(f'{what}: {e}') from e


def _cfg_option_error(option: str) -> Optional[str]:
    """Why a ``--cfg-options`` item (``key=value``) is malformed, or None."""
    key = option.split('=', 1)[0] if '=' in option else ''
    if not key or '' in key.split('.'):
        return (f'{option!r} is not of the form key=value with a dotted key '
                '(e.g. train_cfg.max_iters=10)')
    return None


class CfgOptionsAction(DictAction):
    """mmengine's ``DictAction`` for ``--cfg-options``, whose items must be
    ``key=value``: a malformed one is an argparse error naming it (usage, then
    ``PROG: error: argument --cfg-options: ...``, exit code 2) instead of a
    traceback from inside argparse."""

    def __call__(self, parser, namespace, values, option_string=None):
        for option in values or ():
            problem = _cfg_option_error(option)
            if problem:
                raise argparse.ArgumentError(self, problem)
        super().__call__(parser, namespace, values, option_string)


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Read ``path`` and merge ``--cfg-options``; the ``default_scope`` must be one
    of the codebases the tools serve."""
    if not osp.isfile(path):
        raise ConfigError(f'config file {path!r} does not exist')
    try:
        cfg = Config.fromfile(path)
    except Exception as e:  # syntax errors, missing _base_ files, bad imports
        raise ConfigError(f'cannot read config {path!r}: {type(e).__name__}: {e}') from e
    if cfg_options:
        for key, value in cfg_options.items():
            problem = _cfg_option_error(f'{key}={value}')
            if problem:
                raise ConfigError(f'--cfg-options: {problem}')
        try:
            cfg.merge_from_dict(cfg_options)
        except Exception as e:  # a key through a number, a list index too large
            # the config is left as it was: apply the items one by one to name
            # the first that fails (this run stops here anyway)
            what = cfg_options
            for key, value in cfg_options.items():
                try:
                    cfg.merge_from_dict({key: value})
                except Exception as item_err:
                    what, e = f'{key}={value!r}', item_err
                    break
            raise ConfigError(f'--cfg-options {what} cannot be applied to config '
                              f'{path!r}: {type(e).__name__}: {e}') from e
    scope = cfg.get('default_scope')
    if scope not in SUPPORTED_SCOPES:
        raise ConfigError(f'config {path!r} has default_scope={scope!r}; the tools '
                          f'serve configs of {SUPPORTED_SCOPES}')
    # mmsmlp's modules must be registered whatever the config imports
    imports = list(cfg.get('custom_imports', {}).get('imports', []))
    if 'mmsmlp' not in imports:
        cfg.custom_imports = dict(imports=imports + ['mmsmlp'],
                                  allow_failed_imports=False)
    return cfg


def set_work_dir(cfg: Config, config_path: str, work_dir: Optional[str]):
    """``--work-dir`` > ``cfg.work_dir`` > ``./work_dirs/<config name>``."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config_path))[0])


def _datasets(cfg: ConfigDict) -> Iterable[ConfigDict]:
    """The leaf dataset configs inside dataset wrappers."""
    if not isinstance(cfg, dict):
        return
    if 'datasets' in cfg:  # ConcatDataset
        for sub in cfg['datasets']:
            yield from _datasets(sub)
    elif 'dataset' in cfg:  # RepeatDataset, ClassBalancedDataset, ...
        yield from _datasets(cfg['dataset'])
    else:
        yield cfg


def _is_remote(path: str) -> bool:
    return '://' in path


def check_dataset_files(cfg: Config, loaders: Iterable[str]) -> List[str]:
    """Check the folders and annotation files the datasets of ``loaders``
    (e.g. ``'train_dataloader'``) name, before a Runner writes anything.

    Returns the checked paths; raises :class:`ConfigError` naming the first
    missing or unreadable file and the config key it comes from.
    """
    checked = []
    for loader in loaders:
        loader_cfg = cfg.get(loader)
        if not loader_cfg:
            continue
        for ds in _datasets(loader_cfg.get('dataset')):
            root = ds.get('data_root') or ''
            if root and not _is_remote(root) and not osp.isdir(root):
                raise ConfigError(f'{loader}.dataset.data_root={root!r} is not a '
                                  'folder (generate the toy data or set data_root)')
            ann = ds.get('ann_file')
            if ann:
                ann_path = ann if osp.isabs(ann) else osp.join(root, ann)
                if not _is_remote(ann_path):
                    _check_annotation_file(ann_path, f'{loader}.dataset.ann_file')
                    checked.append(ann_path)
            prefix = ds.get('data_prefix')
            prefixes = prefix.items() if isinstance(prefix, dict) else \
                [('', prefix)] if isinstance(prefix, str) else []
            for key, sub in prefixes:
                if not sub or _is_remote(sub):
                    continue
                path = sub if osp.isabs(sub) else osp.join(root, sub)
                if not osp.isdir(path):
                    name = f'{loader}.dataset.data_prefix' + (f'.{key}' if key else '')
                    raise ConfigError(f'{name}={sub!r}: folder {path!r} does not '
                                      'exist')
                checked.append(path)
    return checked


def _check_annotation_file(path: str, key: str):
    """Refuse an annotation file that is missing, empty, not JSON (``.json``), or
    a COCO file without images or categories (an empty dataset, which mmdet
    would only report once the Runner has started)."""
    if not osp.isfile(path):
        raise ConfigError(f'{key}: annotation file {path!r} does not exist')
    if os.path.getsize(path) == 0:
        raise ConfigError(f'{key}: annotation file {path!r} is empty (0 bytes)')
    if path.endswith('.json'):
        try:
            with open(path, encoding='utf-8') as f:
                data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f'{key}: annotation file {path!r} is not valid JSON: '
                              f'{e}') from e
        if isinstance(data, dict) and 'images' in data:  # COCO format
            missing = [k for k in ('images', 'annotations', 'categories')
                       if not isinstance(data.get(k), list)]
            if missing:
                raise ConfigError(f'{key}: COCO annotation file {path!r} lacks the '
                                  f'lists {missing}')
            why = {'images': 'no image to train or test on',
                   'categories': "no category for the config's classes to match"}
            empty = [f'{k!r} list is empty ({why[k]})' for k in why if not data[k]]
            if empty:
                raise ConfigError(f'{key}: COCO annotation file {path!r} would give '
                                  f'an empty dataset: its {" and its ".join(empty)}')


def enable_amp(cfg: Config):
    """Switch the optimizer wrapper to mmengine's AmpOptimWrapper (fp16 with a
    dynamic loss scale), as mmdet's ``--amp`` does."""
    if not torch.cuda.is_available():
        raise ConfigError('--amp needs a CUDA device: mmengine\'s AmpOptimWrapper '
                          'does not run on the CPU')
    wrapper = cfg.optim_wrapper
    if wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
        return
    wrapper.type = 'AmpOptimWrapper'
    wrapper.setdefault('loss_scale', 'dynamic')


def latest_loadable_checkpoint(work_dir: str) -> Optional[str]:
    """The newest checkpoint of ``work_dir`` that :func:`mmsmlp.utils.read_checkpoint`
    loads.

    A run killed while writing a checkpoint leaves a truncated file (mmengine
    writes in place) or an empty ``last_checkpoint``; those, and files that are
    corrupt or refused for safety, are skipped, with a warning naming them and
    why, in favour of the previous loadable one.
    """
    from mmengine.logging import print_log

    from mmsmlp.utils import CheckpointError, read_checkpoint
    if not osp.isdir(work_dir):
        return None
    candidates = []
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip()
        if named:
            candidates.append(named)
    candidates += sorted(
        (osp.join(work_dir, f) for f in os.listdir(work_dir) if f.endswith('.pth')),
        key=osp.getmtime, reverse=True)
    seen = set()
    for path in candidates:
        if path in seen or not osp.isfile(path):
            continue
        seen.add(path)
        try:
            read_checkpoint(path)
            return path
        except (CheckpointError, OSError) as e:  # truncated, corrupt, unsafe
            print_log(f'skipping checkpoint {path!r} for --resume: {e}',
                      logger='current', level=30)
    return None


def _nothing_to_resume(work_dir: str, what: str) -> ConfigError:
    """The error for an auto-resume that finds no loadable checkpoint: it names the
    work dir and what is in it."""
    from mmsmlp.engine.hooks import partial_files
    start_anew = ('drop --resume to start a new run' if what == '--resume' else
                  'set resume=False to start a new run, or load_from to the '
                  'checkpoint to resume from')
    if not osp.isdir(work_dir):
        return ConfigError(f'{what}: work dir {work_dir!r} does not exist, so there '
                           f'is no checkpoint to resume from (check --work-dir, or '
                           f'{start_anew})')
    unloadable = sorted(f for f in os.listdir(work_dir) if f.endswith('.pth'))
    partial = [osp.basename(p) for p in partial_files(work_dir)]
    if unloadable:
        found = (f'only checkpoints that cannot be loaded (truncated, corrupt or '
                 f'unsafe; the warnings above say why): {unloadable}')
    elif partial:
        found = (f'no checkpoint, only unfinished writes of an interrupted run: '
                 f'{partial}')
    else:
        found = 'no checkpoint (*.pth)'
    return ConfigError(f'{what}: work dir {work_dir!r} holds {found}; nothing to '
                       f'resume from ({start_anew})')


def set_resume(cfg: Config, resume: Optional[str]):
    """``--resume`` alone (``resume='auto'``) resumes from the newest complete
    checkpoint of the work dir, ``--resume PATH`` from that file; without the
    option, a config's ``resume=True`` does the same (from its ``load_from``, or
    the work dir's newest complete checkpoint when it has none).

    Raises :class:`ConfigError`, before anything is written, when there is nothing
    to resume from (no work dir, no checkpoint, only unloadable ones) or the file
    named cannot be loaded: a resume never silently becomes a new run.
    """
    if resume is None:
        if not cfg.get('resume'):
            return
        if cfg.get('load_from'):
            check_checkpoint(cfg.load_from, 'load_from (with resume=True)')
            return
        resume, what = 'auto', 'resume=True in the config (without load_from)'
    else:
        what = '--resume'
    if resume == 'auto':
        ckpt = latest_loadable_checkpoint(cfg.work_dir)
        if ckpt is None:
            raise _nothing_to_resume(cfg.work_dir, what)
        cfg.resume = True
        cfg.load_from = ckpt
    else:
        if not osp.isfile(resume):
            raise ConfigError(f'--resume {resume!r}: checkpoint file does not exist')
        check_checkpoint(resume, '--resume')
        cfg.resume = True
        cfg.load_from = resume


def setup_cpu_distributed(cfg: Config, launcher: str):
    """Run mmengine's DDP on CPU processes (gloo) when no GPU is present.

    mmengine's ``init_dist`` selects a CUDA device and its Runner passes
    ``device_ids`` to DDP, both of which fail without a GPU; the process group is
    initialised here with gloo (the Runner then skips its own initialisation) and
    the model is wrapped by :class:`CPUDistributedDataParallel`.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return
    if launcher != 'pytorch':
        raise ConfigError(f'--launcher {launcher} without a GPU: only the pytorch '
                          'launcher (torchrun) is supported on CPU')
    import torch.distributed as dist
    cfg.setdefault('env_cfg', ConfigDict())
    cfg.env_cfg.dist_cfg = dict(backend='gloo')
    cfg.setdefault('model_wrapper_cfg', dict(type='CPUDistributedDataParallel'))
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')


def add_weights_only_checkpoints(cfg: Config):
    """Make the run save checkpoints that load with ``weights_only=True``
    (see :class:`mmsmlp.engine.WeightsOnlyCheckpointHook`)."""
    hooks = list(cfg.get('custom_hooks', []) or [])
    if not any(h.get('type') in ('WeightsOnlyCheckpointHook',
                                 'mmsmlp.WeightsOnlyCheckpointHook') for h in hooks):
        hooks.append(dict(type='WeightsOnlyCheckpointHook'))
    cfg.custom_hooks = hooks


def use_atomic_checkpoints(cfg: Config):
    """Save through :class:`mmsmlp.engine.AtomicCheckpointHook` where the config
    uses mmengine's plain ``CheckpointHook`` (its arguments are kept): checkpoints
    are then never half-written, and old ones are removed only after the new one is
    complete. Other checkpoint hooks are left as they are."""
    from mmengine.hooks import CheckpointHook
    hook = (cfg.get('default_hooks') or {}).get('checkpoint')
    if isinstance(hook, dict) and (hook.get('type') is CheckpointHook or hook.get(
            'type') in ('CheckpointHook', 'mmengine.CheckpointHook')):
        hook['type'] = 'AtomicCheckpointHook'
