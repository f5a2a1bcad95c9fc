"""Data transforms of mmsmlp (registered in mmengine's root TRANSFORMS)."""
from .check_seg_map import CheckSegMap, InvalidSegMapError

__all__ = ['CheckSegMap', 'InvalidSegMapError']
