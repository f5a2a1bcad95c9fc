"""Datasets of mmsmlp: data transforms (registered on import) and, in
:mod:`mmsmlp.datasets.toy_data`, the generators of the small toy datasets for CPU
demos and tests (imported on use: they need pycocotools and OpenCV)."""
from .transforms import CheckSegMap, InvalidSegMapError

__all__ = ['CheckSegMap', 'InvalidSegMapError']
