"""What ``tools/train.py`` and ``tools/test.py`` share: reading a config of any of
mmdet / mmseg / mmpretrain, checking the files it names before anything is written,
and adapting it to the command line (work dir, AMP, resume, CPU distributed runs)."""
import json
import os
import os.path as osp
from typing import Iterable, List, Optional

import torch
from mmengine.config import Config, ConfigDict

SUPPORTED_SCOPES = ('mmdet', 'mmseg', 'mmpretrain')
LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')


class ConfigError(Exception):
    """A config or a file it names is unusable; the message says which and why."""


def check_checkpoint(path: str, what: str):
    """Refuse a checkpoint that cannot be loaded safely, before a Runner starts:
    missing, empty, truncated, or needing Python objects other than tensors."""
    from mmsmlp.utils import CheckpointError, read_checkpoint
    if '://' in path:
        return
    try:
        read_checkpoint(path)
    except (CheckpointError, OSError) as e:
        raise ConfigError(f'{what}: {e}') from e


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
        cfg.merge_from_dict(cfg_options)
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
    if not osp.isfile(path):
        raise ConfigError(f'{key}: annotation file {path!r} does not exist')
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
    elif os.path.getsize(path) == 0:
        raise ConfigError(f'{key}: annotation file {path!r} is empty')


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
    """The newest checkpoint of ``work_dir`` that loads (``weights_only=True``).

    A run killed while writing a checkpoint leaves a truncated file (mmengine
    writes in place) or an empty ``last_checkpoint``; those are skipped, with a
    warning naming them, in favour of the previous complete one.
    """
    from mmengine.logging import print_log
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
            torch.load(path, map_location='cpu', weights_only=True)
            return path
        except Exception as e:  # truncated, corrupt or unsafe: try an older one
            print_log(f'skipping checkpoint {path!r} for --resume: it cannot be '
                      f'loaded ({type(e).__name__}: {str(e).splitlines()[0][:200]})',
                      logger='current', level=30)
    return None


def set_resume(cfg: Config, resume: Optional[str]):
    """``--resume`` alone resumes from the newest complete checkpoint of the work
    dir (a fresh start if there is none), ``--resume PATH`` from that file."""
    if resume is None:
        return
    if resume == 'auto':
        ckpt = latest_loadable_checkpoint(cfg.work_dir)
        if ckpt is not None:  # otherwise a fresh start (with the config's load_from)
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
