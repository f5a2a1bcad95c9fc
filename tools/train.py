"""Train a detector (mmdet), segmentor (mmseg) or classifier (mmpretrain) from a
config; the config's ``default_scope`` says which. Options as in mmdet's tool.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
                                 [--cfg-options KEY=VALUE ...] [--launcher pytorch]
"""
import argparse
import os
import os.path as osp
import sys



def parse_args(argv=None):
    from mmsmlp.engine.launch import LAUNCHERS, CfgOptionsAction
    parser = argparse.ArgumentParser(prog=f'tools/{osp.basename(__file__)}',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='where to save logs and checkpoints')
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed precision (fp16, CUDA)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by the real batch size / auto_scale_lr.base_batch_size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from CKPT, or from the last checkpoint of the work '
                        'dir when no file is given')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction,
                        help='override config settings, e.g. train_cfg.max_iters=10')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main(argv=None):
    args = parse_args(argv)
    from mmengine.runner import Runner

    from mmsmlp.engine import launch
    try:
        cfg = launch.load_config(args.config, args.cfg_options)
        cfg.launcher = args.launcher
        launch.set_work_dir(cfg, args.config, args.work_dir)
        splits = ['train_dataloader'] + (['val_dataloader']
                                         if cfg.get('val_cfg') else [])
        launch.check_dataset_files(cfg, splits)
        if args.amp:
            launch.enable_amp(cfg)
        if args.auto_scale_lr:
            if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
                raise launch.ConfigError('--auto-scale-lr needs auto_scale_lr.'
                                         'base_batch_size in the config')
            cfg.auto_scale_lr.enable = True
        launch.set_resume(cfg, args.resume)
        if cfg.get('load_from') and not cfg.get('resume'):
            launch.check_checkpoint(cfg.load_from, 'load_from')
        launch.add_weights_only_checkpoints(cfg)
        launch.use_atomic_checkpoints(cfg)
        launch.setup_cpu_distributed(cfg, args.launcher)
    except launch.ConfigError as e:
        sys.exit(f'tools/train.py: error: {e}')

    runner = Runner.from_cfg(cfg)
    runner.train()


if __name__ == '__main__':
    main()
