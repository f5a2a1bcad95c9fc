"""Small, deterministic toy datasets in the COCO, ADE20K and ImageNet layouts.

The datasets let the project train and test detection (mmdet), semantic segmentation
(mmseg) and classification (mmpretrain) end to end on a CPU without downloading
anything. Every image is a *scene* drawn by one sampler, :func:`sample_scene`: a
background (a smooth two-colour gradient, smooth colour clouds or stripes) with a few
non-overlapping shapes on it. Four shape categories are drawn, see
:data:`SHAPE_CLASSES`. Each category has a typical hue (see :data:`SHAPE_PALETTE`)
that is jittered, and now and then replaced by a random hue, so colour is a hint but
the shape has to be learned. Objects are shaded with a mild gradient and the whole
image gets mild Gaussian noise.

Three generators write the three layouts:

* :func:`make_toy_coco` - COCO instances (Mask R-CNN); 1 to 4 objects per image::

      out_dir/train/000000.jpg ...            out_dir/val/000000.jpg ...
      out_dir/annotations/instances_train.json
      out_dir/annotations/instances_val.json

* :func:`make_toy_ade20k` - ADE20K semantic segmentation; same scenes as COCO::

      out_dir/images/training/toy_train_000000.jpg ...
      out_dir/images/validation/toy_val_000000.jpg ...
      out_dir/annotations/training/toy_train_000000.png ...
      out_dir/annotations/validation/toy_val_000000.png ...

* :func:`make_toy_imagenet` - ImageNet classification; one large shape per image
  (the label) and sometimes one small distractor of another category::

      out_dir/train/<class>/<class>_000000.JPEG ...
      out_dir/val/<class>/<class>_000000.JPEG ...
      out_dir/meta/train.txt    ("<class>/<class>_000000.JPEG <label>" per line)
      out_dir/meta/val.txt

Conventions
-----------
* Coordinates follow COCO: a polygon is continuous, pixel ``(x, y)`` covers the square
  ``[x, x + 1) x [y, y + 1)``. Every object is rasterised once, with pycocotools (the
  rasteriser mmdet uses to turn polygons into bitmaps), and that bitmap paints the
  image, the ADE20K label map and gives the COCO ``area``; the COCO ``bbox`` is the
  extent of the polygon, so it contains the polygon and its mask.
* Objects never overlap (placements that would overlap are rejected), and lie inside
  the image with a small margin, so every polygon describes the whole visible object.
* ADE20K labels use the reduce-zero-label convention: ``0`` is unlabelled (ignored),
  ``1`` is ``background`` and ``2..K`` are the shapes, i.e. value ``v`` is
  ``ADE20K_CLASSES[v - 1]``; with ``reduce_zero_label=True`` mmseg maps ``0`` to the
  ignore index 255 and ``v`` to ``v - 1``. A thin unlabelled band is drawn along every
  shape border so the ignore index is exercised.
* Class folders of the ImageNet layout are the class names and
  :data:`IMAGENET_CLASSES` is sorted, so the labels in ``meta/*.txt`` equal the labels
  mmpretrain's ``CustomDataset`` infers from the (sorted) folder names.

Determinism
-----------
Each image draws from its own ``numpy.random.Generator`` seeded with
``(seed, dataset, split, index)``: the same arguments give the same files byte for byte
(PNG is lossless; JPEG is encoded by OpenCV at the fixed quality :data:`JPEG_QUALITY`),
and a larger ``num_train`` keeps the first images unchanged.

Counts and re-generation
------------------------
``num_train`` and ``num_val`` (per class for ImageNet) must be at least 1: every split
must give a loadable dataset. Generating into a folder that already holds a toy
dataset overwrites it: files the generator owns (the names above) are deleted first,
so a run with smaller counts leaves no stale images. Any other entry in a folder the
generator owns (e.g. ``out_dir/train/cat.jpg``) would silently become part of the
dataset, so the generator refuses with :class:`FileExistsError` before touching
anything. Other entries of ``out_dir`` itself are left alone.
"""
import json
import math
import os
import os.path as osp
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Pattern, Sequence, Tuple, Union

import cv2
import numpy as np
from pycocotools import mask as mask_utils

__all__ = [
    'SHAPE_CLASSES', 'SHAPE_PALETTE', 'COCO_CLASSES', 'COCO_PALETTE', 'ADE20K_CLASSES',
    'ADE20K_PALETTE', 'ADE20K_IGNORE_VALUE', 'IMAGENET_CLASSES', 'JPEG_QUALITY',
    'MIN_IMAGE_SIZE', 'MAX_IMAGE_SIZE', 'ToyObject', 'ToyScene', 'polygon_mask',
    'sample_image_size', 'sample_scene', 'make_toy_coco', 'make_toy_ade20k',
    'make_toy_imagenet'
]

#: The shape categories, sorted (the ImageNet layout relies on the order).
SHAPE_CLASSES = ('circle', 'cross', 'rectangle', 'triangle')
#: Typical colour (RGB) of each shape category; drawn colours are jittered around it.
SHAPE_PALETTE = ((220, 50, 50), (235, 200, 40), (50, 90, 225), (40, 170, 70))
#: Categories of the toy COCO set; category ``id`` is ``index + 1``.
COCO_CLASSES = SHAPE_CLASSES
#: RGB palette of :data:`COCO_CLASSES` (for ``metainfo=dict(palette=...)``).
COCO_PALETTE = SHAPE_PALETTE
#: Classes of the toy ADE20K set: PNG value ``v`` (1..5) is ``ADE20K_CLASSES[v - 1]``.
ADE20K_CLASSES = ('background', ) + SHAPE_CLASSES
#: RGB palette of :data:`ADE20K_CLASSES`.
ADE20K_PALETTE = ((120, 120, 120), ) + SHAPE_PALETTE
#: PNG value of unlabelled pixels (mmseg's ``reduce_zero_label`` ignores it).
ADE20K_IGNORE_VALUE = 0
#: Classes of the toy ImageNet set; label ``i`` is ``IMAGENET_CLASSES[i]``.
IMAGENET_CLASSES = SHAPE_CLASSES
#: Quality of every JPEG written (fixed, so encoding is deterministic).
JPEG_QUALITY = 90
#: Accepted range of ``min_size`` / ``max_size`` (image side length in pixels).
MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 2048

# Sizes of objects: diameter of the circumscribed circle, relative to the shorter side.
_SCENE_OBJECT_SIZE = (0.15, 0.45)  # COCO / ADE20K scenes: 1..4 objects
_SCENE_MAX_OBJECTS = 4
_MAIN_OBJECT_SIZE = (0.45, 0.8)  # ImageNet: the labelled shape
_DISTRACTOR_SIZE = (0.1, 0.2)  # ImageNet: an optional small shape of another class
_DISTRACTOR_PROB = 0.3
_MARGIN = 2.0  # pixels between an object and the image border
_GAP = 4.0  # pixels between the circumscribed circles of two objects
_PLACEMENT_TRIES = 40
_RANDOM_HUE_PROB = 0.15  # probability that an object ignores its category hue
_HUE_JITTER = 10  # OpenCV hue units (0..180)

# Per-dataset salt of the per-image seeds, so the three datasets differ.
_DATASET_SALT = {'coco': 1, 'ade20k': 2, 'imagenet': 3}
_SPLIT_SALT = {'train': 0, 'val': 1}

PathLike = Union[str, os.PathLike]


# --------------------------------------------------------------------------- scenes
@dataclass(frozen=True)
class ToyObject:
    """One shape of a scene.

    Attributes:
        category (str): One of :data:`SHAPE_CLASSES`.
        polygon (np.ndarray): ``(N, 2)`` float64 vertices ``(x, y)`` in COCO pixel
            coordinates, rounded to 2 decimals (as written to the COCO json).
        mask (np.ndarray): ``(H, W)`` bool bitmap of the polygon (pycocotools
            rasterisation); these are the pixels painted with the object.
    """
    category: str
    polygon: np.ndarray
    mask: np.ndarray

    @property
    def bbox(self) -> List[float]:
        """``[x, y, w, h]`` extent of the polygon."""
        x0, y0 = self.polygon.min(0)
        x1, y1 = self.polygon.max(0)
        return [round(float(x0), 2), round(float(y0), 2),
                round(float(x1 - x0), 2), round(float(y1 - y0), 2)]

    @property
    def area(self) -> int:
        """Number of pixels of :attr:`mask`."""
        return int(self.mask.sum())


@dataclass(frozen=True)
class ToyScene:
    """A rendered scene: BGR ``uint8`` image ``(H, W, 3)`` and its objects."""
    image: np.ndarray
    objects: Tuple[ToyObject, ...]

    @property
    def height(self) -> int:
        return self.image.shape[0]

    @property
    def width(self) -> int:
        return self.image.shape[1]


def polygon_mask(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """Rasterise a polygon as pycocotools (and so mmdet) does.

    Args:
        polygon (np.ndarray): ``(N, 2)`` vertices ``(x, y)``, COCO coordinates.
        height (int): Mask height.
        width (int): Mask width.

    Returns:
        np.ndarray: ``(height, width)`` bool mask.
    """
    rles = mask_utils.frPyObjects([np.asarray(polygon, np.float64).ravel().tolist()],
                                  height, width)
    return mask_utils.decode(rles)[..., 0].astype(bool)


def _unit_shape(rng: np.random.Generator, category: str) -> np.ndarray:
    """Vertices of a shape centred at 0 whose farthest vertex is at distance 1."""
    if category == 'circle':
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif category == 'rectangle':
        phi = rng.uniform(math.atan(0.45), math.pi / 4)  # aspect ratio 0.45 .. 1
        a, b = math.cos(phi), math.sin(phi)
        pts = np.array([[-a, -b], [a, -b], [a, b], [-a, b]])
    elif category == 'triangle':  # roughly equilateral
        t = np.deg2rad(np.array([90, 210, 330]) + rng.uniform(-12, 12, 3))
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif category == 'cross':  # a plus sign, arm half-width t
        t = rng.uniform(0.2, 0.32)
        pts = np.array([[t, 1], [t, t], [1, t], [1, -t], [t, -t], [t, -1], [-t, -1],
                        [-t, -t], [-1, -t], [-1, t], [-t, t], [-t, 1]])
    else:
        raise ValueError(f'category must be one of {SHAPE_CLASSES}, got {category!r}')
    pts = pts / np.linalg.norm(pts, axis=1).max()
    theta = rng.uniform(0, 2 * np.pi)
    rot = np.array([[math.cos(theta), -math.sin(theta)],
                    [math.sin(theta), math.cos(theta)]])
    return pts @ rot.T


def _hsv_to_bgr(h: float, s: float, v: float) -> np.ndarray:
    """One OpenCV HSV colour (h in 0..180, s/v in 0..255) as a float BGR vector."""
    hsv = np.array([[[h % 180, s, v]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _bgr_to_hue(rgb: Tuple[int, int, int]) -> float:
    """OpenCV hue of an RGB colour."""
    bgr = np.array([[rgb[::-1]]], np.uint8)
    return float(cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)[0, 0, 0])


_CATEGORY_HUE = {c: _bgr_to_hue(p) for c, p in zip(SHAPE_CLASSES, SHAPE_PALETTE)}


def _background_colour(rng: np.random.Generator) -> np.ndarray:
    """A mostly desaturated colour."""
    return _hsv_to_bgr(rng.uniform(0, 180), rng.uniform(0, 110), rng.uniform(40, 230))


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A float32 ``(H, W, 3)`` BGR background: gradient, colour clouds or stripes."""
    kind = rng.choice(3, p=[0.4, 0.3, 0.3])
    if kind == 1:  # smooth colour clouds: a coarse random grid, upsampled
        gh, gw = rng.integers(2, 6, size=2)
        base = _background_colour(rng)
        grid = base + rng.uniform(-50, 50, size=(gh, gw, 3)).astype(np.float32)
        return cv2.resize(np.clip(grid, 0, 255), (width, height),
                          interpolation=cv2.INTER_LINEAR)
    c0, c1 = _background_colour(rng), _background_colour(rng)
    theta = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    proj = xs * math.cos(theta) + ys * math.sin(theta)
    if kind == 0:  # linear gradient across the image
        t = (proj - proj.min()) / max(float(proj.max() - proj.min()), 1e-6)
    else:  # stripes, hard or sinusoidal, of moderate contrast
        c1 = c0 + (c1 - c0) * rng.uniform(0.3, 0.7)
        t = 0.5 + 0.5 * np.sin(proj * (2 * np.pi / rng.uniform(6, 24)))
        if rng.random() < 0.5:
            t = (t > 0.5).astype(np.float32)
    return c0 * (1 - t[..., None]) + c1 * t[..., None]


def _object_colour(rng: np.random.Generator, category: str,
                   under: np.ndarray) -> np.ndarray:
    """A colour of ``category``, chosen to stand out from the mean colour ``under``."""
    best, best_dist = None, -1.0
    for _ in range(6):
        if rng.random() < _RANDOM_HUE_PROB:
            hue = rng.uniform(0, 180)
        else:
            hue = _CATEGORY_HUE[category] + rng.uniform(-_HUE_JITTER, _HUE_JITTER)
        colour = _hsv_to_bgr(hue, rng.uniform(150, 255), rng.uniform(140, 255))
        dist = float(np.linalg.norm(colour - under))
        if dist > best_dist:
            best, best_dist = colour, dist
        if dist >= 90:
            break
    return best


def sample_image_size(rng: np.random.Generator, min_size: int,
                      max_size: int) -> Tuple[int, int]:
    """Draw ``(height, width)`` independently in ``[min_size, max_size]``."""
    h, w = rng.integers(min_size, max_size + 1, size=2)
    return int(h), int(w)


def sample_scene(rng: np.random.Generator, height: int, width: int,
                 objects: Sequence[Tuple[str, float]]) -> ToyScene:
    """Render a scene; the one sampler behind all three toy datasets.

    Objects are placed in the given order at uniformly random positions, fully inside
    the image; a placement whose circumscribed circle comes closer than a few pixels
    to one of an object already placed is rejected and redrawn. An object that finds
    no place after a few tries is left out (never the first one, which always fits).

    Args:
        rng (np.random.Generator): Source of all randomness.
        height (int): Image height.
        width (int): Image width.
        objects (Sequence[tuple[str, float]]): ``(category, size)`` per object, where
            ``size`` is the diameter of the circle around the shape relative to the
            shorter image side, in ``(0, 1]``. Place the largest first.

    Returns:
        ToyScene: The BGR image and the objects that were placed.
    """
    image = _background(rng, height, width)
    short = min(height, width)
    placed: List[ToyObject] = []
    circles: List[Tuple[float, float, float]] = []
    for category, size in objects:
        if not 0 < size <= 1:
            raise ValueError(f'object size must be in (0, 1], got {size!r}')
        radius = min(size * short / 2, short / 2 - _MARGIN - 0.5)
        shape = _unit_shape(rng, category) * radius
        for _ in range(_PLACEMENT_TRIES):
            cx = rng.uniform(radius + _MARGIN, width - radius - _MARGIN)
            cy = rng.uniform(radius + _MARGIN, height - radius - _MARGIN)
            if all(math.hypot(cx - x, cy - y) >= radius + r + _GAP
                   for x, y, r in circles):
                break
        else:
            continue
        circles.append((cx, cy, radius))
        polygon = np.round(shape + (cx, cy), 2)
        mask = polygon_mask(polygon, height, width)
        x0, y0 = np.floor(polygon.min(0)).astype(int)
        x1, y1 = np.ceil(polygon.max(0)).astype(int)
        colour = _object_colour(rng, category,
                                image[y0:y1, x0:x1].reshape(-1, 3).mean(0))
        # mild shading: a linear brightness ramp across the object
        theta, amp = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.2)
        ys, xs = np.nonzero(mask)
        ramp = ((xs - cx) * math.cos(theta) + (ys - cy) * math.sin(theta)) / radius
        image[ys, xs] = colour * (1 + amp * ramp[:, None].astype(np.float32))
        placed.append(ToyObject(category, polygon, mask))
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 0.9))
    sigma = rng.uniform(0, 6)
    image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    return ToyScene(np.clip(np.rint(image), 0, 255).astype(np.uint8), tuple(placed))


def _multi_object_scene(rng: np.random.Generator, min_size: int,
                        max_size: int) -> ToyScene:
    """A COCO / ADE20K scene: 1 to 4 shapes of random categories."""
    height, width = sample_image_size(rng, min_size, max_size)
    num = int(rng.integers(1, _SCENE_MAX_OBJECTS + 1))
    kinds = rng.integers(len(SHAPE_CLASSES), size=num)
    categories = [SHAPE_CLASSES[i] for i in kinds]
    sizes = np.sort(rng.uniform(*_SCENE_OBJECT_SIZE, size=num))[::-1]
    return sample_scene(rng, height, width, list(zip(categories, sizes)))


def _image_rng(seed: int, dataset: str, split: str, *index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _DATASET_SALT[dataset], _SPLIT_SALT[split],
                                  *index])


# ---------------------------------------------------------------------- file output
def _encode(path: str, image: np.ndarray) -> None:
    """Write a JPEG (fixed quality) or PNG, chosen by the suffix of ``path``."""
    if path.lower().endswith(('.jpg', '.jpeg')):
        ok, buf = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    else:
        ok, buf = cv2.imencode('.png', image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise OSError(f'OpenCV could not encode {path}')
    with open(path, 'wb') as f:
        f.write(buf.tobytes())


def _write_json(path: str, obj: dict) -> None:
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(obj, f, separators=(',', ':'))
        f.write('\n')


@dataclass(frozen=True)
class _OwnedDir:
    """A folder the generator writes: files matching ``pattern`` and ``subdirs``."""
    path: str
    pattern: Pattern
    subdirs: Tuple[str, ...] = ()


def _prepare_dirs(owned: Sequence[_OwnedDir]) -> None:
    """Create the owned folders, deleting owned files left by a previous run.

    Raises:
        FileExistsError: if an owned folder holds anything else (checked for all
            folders before anything is deleted) or an owned path is not a folder.
    """
    foreign, stale = [], []
    for d in owned:
        if not osp.exists(d.path):
            continue
        if not osp.isdir(d.path):
            foreign.append(d.path)
            continue
        for name in sorted(os.listdir(d.path)):
            full = osp.join(d.path, name)
            if osp.isdir(full) and not osp.islink(full):
                if name not in d.subdirs:
                    foreign.append(full + os.sep)
            elif osp.isfile(full) and d.pattern.fullmatch(name):
                stale.append(full)
            else:
                foreign.append(full)
    if foreign:
        shown = ', '.join(foreign[:5]) + (' ...' if len(foreign) > 5 else '')
        raise FileExistsError(
            f'refusing to write a toy dataset: {len(foreign)} path(s) not made by '
            f'this generator would end up in it: {shown}. Remove them or choose '
            f'another out_dir.')
    for path in stale:
        os.remove(path)
    for d in owned:
        os.makedirs(d.path, exist_ok=True)


# ----------------------------------------------------------------- argument checks
def _check_int(name: str, value, minimum: int, maximum: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f'{name} must be an int, got {value!r} '
                        f'of type {type(value).__name__}')
    if value < minimum or (maximum is not None and value > maximum):
        accepted = f'>= {minimum}' if maximum is None else f'in [{minimum}, {maximum}]'
        raise ValueError(f'{name} must be an int {accepted}, got {value}')
    return int(value)


def _check_args(out_dir, counts: Dict[str, object], seed, min_size,
                max_size) -> Tuple[str, Dict[str, int], int, int, int]:
    """Validate the arguments shared by the generators; return them normalised."""
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f'out_dir must be a str or os.PathLike, got {out_dir!r} '
                        f'of type {type(out_dir).__name__}')
    out_dir = os.fspath(out_dir)
    if not out_dir:
        raise ValueError("out_dir must be a folder path, got ''")
    if osp.exists(out_dir) and not osp.isdir(out_dir):
        raise ValueError(f'out_dir must be a folder (existing or new), got '
                         f'{out_dir!r} which exists and is not a folder')
    counts = {k: _check_int(k, v, 1) for k, v in counts.items()}
    seed = _check_int('seed', seed, 0)
    min_size = _check_int('min_size', min_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
    max_size = _check_int('max_size', max_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
    if min_size > max_size:
        raise ValueError(f'min_size must be <= max_size, got min_size={min_size} '
                         f'and max_size={max_size}')
    return osp.abspath(out_dir), counts, seed, min_size, max_size


# ------------------------------------------------------------------------ generators
def make_toy_coco(out_dir: PathLike,
                  num_train: int = 200,
                  num_val: int = 50,
                  seed: int = 0,
                  min_size: int = 96,
                  max_size: int = 256) -> dict:
    """Write a toy COCO instance-segmentation dataset (see the module docstring).

    Images have 1 to 4 non-overlapping shapes of :data:`COCO_CLASSES` (category
    ``id`` = index + 1), each 15-45 % of the shorter image side. Annotations carry a
    polygon ``segmentation``, the pycocotools ``area`` of that polygon, a float
    ``bbox`` ``[x, y, w, h]`` and ``iscrowd`` 0; ids of images and annotations start
    at 1 in each split.

    Args:
        out_dir (str | PathLike): Dataset root, created if missing.
        num_train (int): Number of training images, >= 1. Defaults to 200.
        num_val (int): Number of validation images, >= 1. Defaults to 50.
        seed (int): Seed, >= 0. Defaults to 0.
        min_size (int): Smallest image side, in [32, 2048]. Defaults to 96.
        max_size (int): Largest image side, in [min_size, 2048]. Defaults to 256.

    Returns:
        dict: ``root``, ``classes``, ``seed`` and, per split (``train``, ``val``),
        ``img_dir``, ``ann_file``, ``num_images`` and ``num_objects``.

    Raises:
        TypeError: An argument of the wrong type.
        ValueError: An argument out of range.
        FileExistsError: A folder the generator writes holds foreign files.
    """
    out_dir, counts, seed, min_size, max_size = _check_args(
        out_dir, dict(num_train=num_train, num_val=num_val), seed, min_size, max_size)
    ann_dir = osp.join(out_dir, 'annotations')
    image_name = re.compile(r'\d{6,}\.jpg')
    _prepare_dirs([
        _OwnedDir(osp.join(out_dir, 'train'), image_name),
        _OwnedDir(osp.join(out_dir, 'val'), image_name),
        _OwnedDir(ann_dir, re.compile(r'instances_(train|val)\.json'))
    ])
    categories = [dict(id=i + 1, name=c, supercategory='shape')
                  for i, c in enumerate(COCO_CLASSES)]
    summary = dict(root=out_dir, classes=COCO_CLASSES, seed=seed)
    for split in ('train', 'val'):
        images, annotations = [], []
        for index in range(counts[f'num_{split}']):
            scene = _multi_object_scene(_image_rng(seed, 'coco', split, index),
                                        min_size, max_size)
            file_name = f'{index:06d}.jpg'
            _encode(osp.join(out_dir, split, file_name), scene.image)
            images.append(dict(id=index + 1, file_name=file_name, height=scene.height,
                               width=scene.width))
            for obj in scene.objects:
                annotations.append(
                    dict(id=len(annotations) + 1, image_id=index + 1,
                         category_id=COCO_CLASSES.index(obj.category) + 1,
                         segmentation=[obj.polygon.ravel().tolist()],
                         area=float(obj.area), bbox=obj.bbox, iscrowd=0))
        ann_file = osp.join(ann_dir, f'instances_{split}.json')
        _write_json(ann_file, dict(
            info=dict(description=f'mmsmlp toy COCO ({split})', version='1.0',
                      seed=seed),
            licenses=[], images=images, annotations=annotations,
            categories=categories))
        summary[split] = dict(img_dir=osp.join(out_dir, split), ann_file=ann_file,
                              num_images=len(images), num_objects=len(annotations))
    return summary


def make_toy_ade20k(out_dir: PathLike,
                    num_train: int = 200,
                    num_val: int = 50,
                    seed: int = 0,
                    min_size: int = 96,
                    max_size: int = 256,
                    ignore_border: int = 1) -> dict:
    """Write a toy ADE20K semantic-segmentation dataset (see the module docstring).

    Scenes are drawn like :func:`make_toy_coco`'s. Label maps are single-channel
    ``uint8`` PNGs of the image's size with values in ``0..len(ADE20K_CLASSES)``:
    ``0`` unlabelled, ``v >= 1`` is ``ADE20K_CLASSES[v - 1]`` (``1`` = background).
    Load them with ``reduce_zero_label=True``.

    Args:
        out_dir (str | PathLike): Dataset root, created if missing.
        num_train (int): Number of training images, >= 1. Defaults to 200.
        num_val (int): Number of validation images, >= 1. Defaults to 50.
        seed (int): Seed, >= 0. Defaults to 0.
        min_size (int): Smallest image side, in [32, 2048]. Defaults to 96.
        max_size (int): Largest image side, in [min_size, 2048]. Defaults to 256.
        ignore_border (int): Width in pixels, on each side of every shape border, of
            the unlabelled band; 0 for none. In [0, 8]. Defaults to 1.

    Returns:
        dict: ``root``, ``classes``, ``palette``, ``seed`` and, per split (``train``,
        ``val``), ``img_dir``, ``seg_map_dir`` and ``num_images``.

    Raises:
        TypeError: An argument of the wrong type.
        ValueError: An argument out of range.
        FileExistsError: A folder the generator writes holds foreign files.
    """
    out_dir, counts, seed, min_size, max_size = _check_args(
        out_dir, dict(num_train=num_train, num_val=num_val), seed, min_size, max_size)
    ignore_border = _check_int('ignore_border', ignore_border, 0, 8)
    folders = dict(train='training', val='validation')
    owned = []
    for split, folder in folders.items():
        owned += [
            _OwnedDir(osp.join(out_dir, 'images', folder),
                      re.compile(rf'toy_{split}_\d{{6,}}\.jpg'), ()),
            _OwnedDir(osp.join(out_dir, 'annotations', folder),
                      re.compile(rf'toy_{split}_\d{{6,}}\.png'), ())
        ]
    _prepare_dirs(owned)
    kernel = np.ones((2 * ignore_border + 1, ) * 2, np.uint8)
    summary = dict(root=out_dir, classes=ADE20K_CLASSES, palette=ADE20K_PALETTE,
                   seed=seed)
    for split, folder in folders.items():
        img_dir = osp.join(out_dir, 'images', folder)
        seg_dir = osp.join(out_dir, 'annotations', folder)
        for index in range(counts[f'num_{split}']):
            scene = _multi_object_scene(_image_rng(seed, 'ade20k', split, index),
                                        min_size, max_size)
            label = np.full((scene.height, scene.width), 1, np.uint8)  # background
            band = np.zeros_like(label)
            for obj in scene.objects:
                mask = obj.mask.astype(np.uint8)
                label[obj.mask] = ADE20K_CLASSES.index(obj.category) + 1
                if ignore_border:
                    band |= cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, kernel)
            label[band > 0] = ADE20K_IGNORE_VALUE
            stem = f'toy_{split}_{index:06d}'
            _encode(osp.join(img_dir, stem + '.jpg'), scene.image)
            _encode(osp.join(seg_dir, stem + '.png'), label)
        summary[split] = dict(img_dir=img_dir, seg_map_dir=seg_dir,
                              num_images=counts[f'num_{split}'])
    return summary


def make_toy_imagenet(out_dir: PathLike,
                      num_train_per_class: int = 60,
                      num_val_per_class: int = 15,
                      seed: int = 0,
                      min_size: int = 96,
                      max_size: int = 256) -> dict:
    """Write a toy ImageNet classification dataset (see the module docstring).

    Each image shows one large shape (45-80 % of the shorter side) whose category is
    the label, and with probability 0.3 one small shape (10-20 %) of another
    category. ``meta/<split>.txt`` lists ``<class>/<file>.JPEG <label>`` relative to
    the split folder, as ImageNet's ``meta/train.txt`` does, so both
    ``CustomDataset(data_root=out_dir, data_prefix='train')`` (folders) and
    ``CustomDataset(..., ann_file='meta/train.txt', data_prefix='train')`` or
    ``ImageNet(data_root=out_dir, split='train')`` load the same samples.

    Args:
        out_dir (str | PathLike): Dataset root, created if missing.
        num_train_per_class (int): Training images per class, >= 1. Defaults to 60.
        num_val_per_class (int): Validation images per class, >= 1. Defaults to 15.
        seed (int): Seed, >= 0. Defaults to 0.
        min_size (int): Smallest image side, in [32, 2048]. Defaults to 96.
        max_size (int): Largest image side, in [min_size, 2048]. Defaults to 256.

    Returns:
        dict: ``root``, ``classes``, ``seed`` and, per split (``train``, ``val``),
        ``img_dir``, ``ann_file`` and ``num_images``.

    Raises:
        TypeError: An argument of the wrong type.
        ValueError: An argument out of range.
        FileExistsError: A folder the generator writes holds foreign files.
    """
    out_dir, counts, seed, min_size, max_size = _check_args(
        out_dir,
        dict(num_train_per_class=num_train_per_class,
             num_val_per_class=num_val_per_class), seed, min_size, max_size)
    owned = [_OwnedDir(osp.join(out_dir, 'meta'), re.compile(r'(train|val)\.txt'))]
    for split in ('train', 'val'):
        owned.append(_OwnedDir(osp.join(out_dir, split), re.compile(''),
                               IMAGENET_CLASSES))
        owned += [
            _OwnedDir(osp.join(out_dir, split, c), re.compile(rf'{c}_\d{{6,}}\.JPEG'))
            for c in IMAGENET_CLASSES
        ]
    _prepare_dirs(owned)
    summary = dict(root=out_dir, classes=IMAGENET_CLASSES, seed=seed)
    for split in ('train', 'val'):
        lines = []
        for label, category in enumerate(IMAGENET_CLASSES):
            others = [c for c in IMAGENET_CLASSES if c != category]
            for index in range(counts[f'num_{split}_per_class']):
                rng = _image_rng(seed, 'imagenet', split, label, index)
                height, width = sample_image_size(rng, min_size, max_size)
                objects = [(category, rng.uniform(*_MAIN_OBJECT_SIZE))]
                if rng.random() < _DISTRACTOR_PROB:
                    objects.append((others[rng.integers(len(others))],
                                    rng.uniform(*_DISTRACTOR_SIZE)))
                scene = sample_scene(rng, height, width, objects)
                rel = f'{category}/{category}_{index:06d}.JPEG'
                _encode(osp.join(out_dir, split, rel), scene.image)
                lines.append(f'{rel} {label}\n')
        ann_file = osp.join(out_dir, 'meta', f'{split}.txt')
        with open(ann_file, 'w', encoding='utf-8') as f:
            f.writelines(lines)
        summary[split] = dict(img_dir=osp.join(out_dir, split), ann_file=ann_file,
                              num_images=len(lines))
    return summary
