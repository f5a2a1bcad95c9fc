__version__ = '0.1.0'

#: The releases CI tests (``requirements/stacks/*.txt``), as ``[lowest, highest]``.
#: setup.py declares Python, mmengine, numpy and timm; torch and mmcv, which pip
#: must never replace in a user's environment, are checked on import instead.
TESTED_TORCH = ('2.1.2', '2.13.0')
TESTED_MMCV = ('2.1.0', '2.1.0')


def _minor(version: str) -> tuple:
    return tuple(int(p) for p in version.split('+')[0].split('.')[:2])


def check_dependencies() -> None:
    """Refuse a torch or mmcv that mmsmlp does not support, naming the versions.

    torch older than the tested range lacks APIs mmsmlp uses and mmcv outside 2.1 is
    refused by mmdet 3.3 and mmseg 1.2 as well: both are errors. A torch newer than
    the tested range is only warned about.
    """
    import warnings

    import mmcv
    import torch
    torch_v, lo, hi = _minor(torch.__version__), *map(_minor, TESTED_TORCH)
    if torch_v < lo:
        raise ImportError(f'mmsmlp {__version__} needs torch >= {TESTED_TORCH[0]} '
                          f'(tested {TESTED_TORCH[0]} to {TESTED_TORCH[1]}); this '
                          f'environment has torch {torch.__version__}')
    if torch_v > hi:
        warnings.warn(f'mmsmlp {__version__} was tested with torch {TESTED_TORCH[0]} '
                      f'to {TESTED_TORCH[1]}; torch {torch.__version__} is newer')
    if not _minor(TESTED_MMCV[0]) <= _minor(mmcv.__version__) <= _minor(TESTED_MMCV[1]):
        raise ImportError(f'mmsmlp {__version__} needs mmcv {TESTED_MMCV[0]} to '
                          f'{TESTED_MMCV[1][:3]}.x (the mmcv of mmdet 3.3 and '
                          f'mmsegmentation 1.2); this environment has mmcv '
                          f'{mmcv.__version__}')
