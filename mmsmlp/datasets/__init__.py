"""Datasets of mmsmlp: generators of small toy datasets for CPU demos and tests,
and data transforms."""
from .toy_data import (ADE20K_CLASSES, ADE20K_IGNORE_VALUE, ADE20K_PALETTE,
                       COCO_CLASSES, COCO_PALETTE, IMAGENET_CLASSES, SHAPE_CLASSES,
                       SHAPE_PALETTE, make_toy_ade20k, make_toy_coco,
                       make_toy_imagenet)
from .transforms import CheckSegMap, InvalidSegMapError

__all__ = [
    'SHAPE_CLASSES', 'SHAPE_PALETTE', 'COCO_CLASSES', 'COCO_PALETTE', 'ADE20K_CLASSES',
    'ADE20K_PALETTE', 'ADE20K_IGNORE_VALUE', 'IMAGENET_CLASSES', 'make_toy_coco',
    'make_toy_ade20k', 'make_toy_imagenet', 'CheckSegMap', 'InvalidSegMapError'
]
