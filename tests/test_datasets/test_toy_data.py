"""Tests of the toy dataset generators (mmsmlp.datasets.toy_data) and their CLI."""
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmengine.registry import init_default_scope
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mmsmlp.datasets.toy_data import (ADE20K_CLASSES, ADE20K_PALETTE, COCO_CLASSES,
                                      IMAGENET_CLASSES, make_toy_ade20k,
                                      make_toy_coco, make_toy_imagenet,
                                      polygon_mask)

REPO = Path(__file__).resolve().parents[2]
SMALL = dict(num_train=8, num_val=3)
SMALL_IN = dict(num_train_per_class=3, num_val_per_class=2)
# pycocotools on numpy 2; mmseg's transform-level reduce_zero_label (as ADE20K configs)
pytestmark = [
    pytest.mark.filterwarnings('ignore:__array__ implementation:DeprecationWarning'),
    pytest.mark.filterwarnings('ignore:`reduce_zero_label` will be deprecated'),
]
GENERATORS = {
    'coco': (make_toy_coco, SMALL),
    'ade20k': (make_toy_ade20k, SMALL),
    'imagenet': (make_toy_imagenet, SMALL_IN),
}


def _files(root):
    """``{relative path: bytes}`` of every file under ``root``."""
    root = Path(root)
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    """Each dataset generated twice with the same seed, in different folders."""
    out = {}
    for name, (make, counts) in GENERATORS.items():
        out[name] = [make(tmp_path_factory.mktemp(f'{name}{i}'), seed=3, **counts)
                     for i in range(2)]
    return out


# ----------------------------------------------------------------------- determinism
@pytest.mark.parametrize('name', list(GENERATORS))
def test_same_seed_same_bytes(toy, name):
    first, second = (_files(s['root']) for s in toy[name])
    assert len(first) > 4 and first.keys() == second.keys()
    for rel in first:
        assert first[rel] == second[rel], rel


@pytest.mark.parametrize('name', list(GENERATORS))
def test_other_seed_other_images(toy, tmp_path, name):
    make, counts = GENERATORS[name]
    other = _files(make(tmp_path, seed=4, **counts)['root'])
    ref = _files(toy[name][0]['root'])
    assert other.keys() == ref.keys()
    images = [k for k in ref if k.lower().endswith(('.jpg', '.jpeg'))]
    assert all(other[k] != ref[k] for k in images)


def test_summary(toy):
    coco = toy['coco'][0]
    assert coco['classes'] == COCO_CLASSES and coco['seed'] == 3
    assert coco['train']['num_images'] == 8 and coco['val']['num_images'] == 3
    assert coco['train']['num_objects'] >= 8
    assert Path(coco['train']['ann_file']).is_file()
    ade = toy['ade20k'][0]
    assert ade['classes'] == ADE20K_CLASSES and ade['palette'] == ADE20K_PALETTE
    assert Path(ade['val']['seg_map_dir']).is_dir()
    imnet = toy['imagenet'][0]
    assert imnet['train']['num_images'] == 3 * len(IMAGENET_CLASSES)
    assert imnet['val']['num_images'] == 2 * len(IMAGENET_CLASSES)


# ------------------------------------------------------------------------------ COCO
def test_coco_annotations_are_consistent(toy):
    root = Path(toy['coco'][0]['root'])
    for split, num in (('train', 8), ('val', 3)):
        coco = COCO(str(root / 'annotations' / f'instances_{split}.json'))
        assert sorted(coco.getImgIds()) == list(range(1, num + 1))
        assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(COCO_CLASSES)
        assert sorted(os.listdir(root / split)) == sorted(
            i['file_name'] for i in coco.dataset['images'])
        for img_id, info in coco.imgs.items():
            h, w = info['height'], info['width']
            assert cv2.imread(str(root / split / info['file_name'])).shape == (h, w, 3)
            anns = coco.imgToAnns[img_id]
            assert 1 <= len(anns) <= 4
            union = np.zeros((h, w), np.int32)
            for ann in anns:
                assert ann['iscrowd'] == 0 and 1 <= ann['category_id'] <= 4
                assert all(isinstance(v, float) for v in ann['bbox'])
                poly = np.array(ann['segmentation'][0]).reshape(-1, 2)
                assert len(ann['segmentation']) == 1 and len(poly) >= 3
                x, y, bw, bh = ann['bbox']
                assert bw > 0 and bh > 0
                # bbox is the polygon's extent; it lies inside the image
                np.testing.assert_allclose(poly.min(0), (x, y), atol=0.011)
                np.testing.assert_allclose(poly.max(0), (x + bw, y + bh), atol=0.011)
                assert x >= 0 and y >= 0 and x + bw <= w and y + bh <= h
                # objects are reasonably large: 10 % .. 50 % of the shorter side
                assert 0.1 * min(h, w) <= max(bw, bh) <= 0.5 * min(h, w)
                mask = coco.annToMask(ann)
                assert ann['area'] == mask.sum() > 0
                mx, my, mw, mh = mask_utils.toBbox(mask_utils.encode(
                    np.asfortranarray(mask)))
                assert x - 1 <= mx and y - 1 <= my
                assert mx + mw <= x + bw + 1 and my + mh <= y + bh + 1
                union += mask
            assert union.max() == 1  # no two objects overlap


def test_images_have_several_sizes_and_aspect_ratios(toy):
    coco = json.loads(Path(toy['coco'][0]['train']['ann_file']).read_text())
    shapes = {(i['height'], i['width']) for i in coco['images']}
    assert len(shapes) >= 4
    ratios = [w / h for h, w in shapes]
    assert min(ratios) < 0.9 and max(ratios) > 1.1
    sides = [s for shape in shapes for s in shape]
    assert min(sides) >= 96 and max(sides) <= 256
    imnet = Path(toy['imagenet'][0]['train']['img_dir'])
    assert len({cv2.imread(str(p)).shape for p in imnet.rglob('*.JPEG')}) >= 4


def test_size_range_is_respected(tmp_path):
    summary = make_toy_coco(tmp_path, num_train=6, num_val=1, min_size=40, max_size=48)
    coco = json.loads(Path(summary['train']['ann_file']).read_text())
    assert all(40 <= i[k] <= 48 for i in coco['images'] for k in ('height', 'width'))


def test_polygon_mask_matches_pycocotools():
    poly = np.array([[3.2, 4.5], [30.7, 8.1], [12.0, 25.9]])
    ref = mask_utils.decode(mask_utils.frPyObjects([poly.ravel().tolist()], 32, 40))
    mask = polygon_mask(poly, 32, 40)
    assert mask.shape == (32, 40) and mask.dtype == bool
    np.testing.assert_array_equal(mask, ref[..., 0].astype(bool))


def test_coco_loads_in_mmdet(toy):
    from mmdet.datasets import CocoDataset
    init_default_scope('mmdet')
    root = toy['coco'][0]['root']
    dataset = CocoDataset(
        data_root=root,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        metainfo=dict(classes=COCO_CLASSES),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True, with_mask=True)
        ])
    assert len(dataset) == 8
    coco = COCO(toy['coco'][0]['train']['ann_file'])
    for idx in (0, 5):
        item = dataset[idx]
        anns = coco.imgToAnns[item['img_id']]
        assert item['img'].shape[:2] == item['ori_shape']
        assert len(item['gt_bboxes']) == len(item['gt_masks']) == len(anns)
        np.testing.assert_array_equal(item['gt_bboxes_labels'],
                                      [a['category_id'] - 1 for a in anns])
        masks = item['gt_masks'].to_ndarray()
        assert [m.sum() for m in masks] == [a['area'] for a in anns]


# ---------------------------------------------------------------------------- ADE20K
def test_ade20k_label_maps(toy):
    root = Path(toy['ade20k'][0]['root'])
    seen = set()
    for split, folder, num in (('train', 'training', 8), ('val', 'validation', 3)):
        images = sorted((root / 'images' / folder).iterdir())
        labels = sorted((root / 'annotations' / folder).iterdir())
        assert [p.stem for p in images] == [p.stem for p in labels]
        assert len(images) == num and all(p.suffix == '.jpg' for p in images)
        for img_path, label_path in zip(images, labels):
            img = cv2.imread(str(img_path), cv2.IMREAD_UNCHANGED)
            label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
            assert label.dtype == np.uint8 and label.ndim == 2
            assert label.shape == img.shape[:2]
            values = set(np.unique(label).tolist())
            assert values <= set(range(len(ADE20K_CLASSES) + 1))
            assert {0, 1} <= values and len(values) >= 3  # ignore, background, shape
            assert (label == 0).mean() < 0.2  # the ignore band is thin
            seen |= values
    assert seen == set(range(len(ADE20K_CLASSES) + 1))


def test_ade20k_ignore_border_zero(tmp_path):
    summary = make_toy_ade20k(tmp_path, num_train=3, num_val=1, ignore_border=0)
    for p in Path(summary['train']['seg_map_dir']).iterdir():
        assert (cv2.imread(str(p), cv2.IMREAD_UNCHANGED) > 0).all()


def test_ade20k_loads_in_mmseg(toy):
    import mmseg.datasets  # noqa: F401  (registers datasets and transforms)
    from mmseg.registry import DATASETS
    init_default_scope('mmseg')
    dataset = DATASETS.build(
        dict(type='BaseSegDataset',
             data_root=toy['ade20k'][0]['root'],
             data_prefix=dict(img_path='images/training',
                              seg_map_path='annotations/training'),
             metainfo=dict(classes=ADE20K_CLASSES, palette=ADE20K_PALETTE),
             img_suffix='.jpg',
             seg_map_suffix='.png',
             reduce_zero_label=True,
             pipeline=[
                 dict(type='LoadImageFromFile'),
                 dict(type='LoadAnnotations', reduce_zero_label=True)
             ]))
    assert len(dataset) == 8
    item = dataset[2]
    raw = cv2.imread(item['seg_map_path'], cv2.IMREAD_UNCHANGED)
    assert item['gt_seg_map'].shape == item['img'].shape[:2] == raw.shape
    expected = raw.astype(np.int64) - 1
    expected[raw == 0] = 255
    np.testing.assert_array_equal(item['gt_seg_map'], expected)
    assert set(np.unique(item['gt_seg_map'])) <= set(range(len(ADE20K_CLASSES))) | {255}


# -------------------------------------------------------------------------- ImageNet
def test_imagenet_layout(toy):
    root = Path(toy['imagenet'][0]['root'])
    for split, num in (('train', 3), ('val', 2)):
        assert sorted(os.listdir(root / split)) == list(IMAGENET_CLASSES)
        lines = (root / 'meta' / f'{split}.txt').read_text().splitlines()
        assert len(lines) == num * len(IMAGENET_CLASSES)
        for line in lines:
            rel, label = line.split(' ')
            assert rel.split('/')[0] == IMAGENET_CLASSES[int(label)]
            assert (root / split / rel).is_file() and rel.endswith('.JPEG')


def test_imagenet_loads_in_mmpretrain(toy):
    from mmpretrain.datasets import CustomDataset, ImageNet
    init_default_scope('mmpretrain')
    root = toy['imagenet'][0]['root']
    pipeline = [dict(type='LoadImageFromFile')]
    by_folder = CustomDataset(data_root=root, data_prefix='train', pipeline=pipeline)
    by_list = CustomDataset(data_root=root, data_prefix='train',
                            ann_file='meta/train.txt',
                            metainfo=dict(classes=IMAGENET_CLASSES), pipeline=pipeline)
    by_split = ImageNet(data_root=root, split='val',
                        metainfo=dict(classes=IMAGENET_CLASSES), pipeline=pipeline)
    assert tuple(by_folder.CLASSES) == IMAGENET_CLASSES
    assert len(by_folder) == len(by_list) == 12 and len(by_split) == 8

    def samples(ds):
        return sorted((os.path.normpath(ds.get_data_info(i)['img_path']),
                       int(ds.get_data_info(i)['gt_label'])) for i in range(len(ds)))

    assert samples(by_folder) == samples(by_list)
    for img_path, label in samples(by_split):
        assert Path(img_path).parent.name == IMAGENET_CLASSES[label]
    item = by_list[4]
    assert item['img'].ndim == 3 and item['img'].shape[2] == 3


# ----------------------------------------------------------------- re-generation
def test_regenerate_removes_stale_files(tmp_path):
    fresh = _files(make_toy_coco(tmp_path / 'fresh', num_train=2, num_val=1)['root'])
    make_toy_coco(tmp_path / 'reused', num_train=5, num_val=2)
    reused = _files(make_toy_coco(tmp_path / 'reused', num_train=2, num_val=1)['root'])
    assert reused == fresh

    first = _files(make_toy_imagenet(tmp_path / 'in', 3, 1)['root'])
    again = _files(make_toy_imagenet(tmp_path / 'in', 2, 1)['root'])
    assert set(again) < set(first)
    images = [k for k in again if k.endswith('.JPEG')]
    assert len(images) == (2 + 1) * len(IMAGENET_CLASSES)
    assert all(again[k] == first[k] for k in images)  # the first images are kept
    assert again['meta/train.txt'] != first['meta/train.txt']


@pytest.mark.parametrize('name,foreign', [
    ('coco', 'train/cat.jpg'),
    ('coco', 'annotations/instances_test.json'),
    ('ade20k', 'images/training/x.jpg'),
    ('imagenet', 'train/dog/dog_000000.JPEG'),
    ('imagenet', 'meta/test.txt'),
])
def test_refuses_foreign_files(tmp_path, name, foreign):
    make, counts = GENERATORS[name]
    make(tmp_path, **counts)
    before = _files(tmp_path)
    (tmp_path / foreign).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / foreign).write_bytes(b'not mine')
    with pytest.raises(FileExistsError, match='not made by this generator'):
        make(tmp_path, **counts)
    after = _files(tmp_path)
    assert after.pop(foreign) == b'not mine' and after == before  # nothing touched


def test_other_files_in_out_dir_are_kept(tmp_path):
    (tmp_path / 'README.md').write_text('mine')
    make_toy_ade20k(tmp_path, num_train=1, num_val=1)
    assert (tmp_path / 'README.md').read_text() == 'mine'


# -------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize('kwargs,error,words', [
    (dict(num_train=0), ValueError, ['num_train', '0', '>= 1']),
    (dict(num_val=-1), ValueError, ['num_val', '-1', '>= 1']),
    (dict(num_train=2.0), TypeError, ['num_train', '2.0', 'int']),
    (dict(min_size=200, max_size=100), ValueError, ['min_size', '200', 'max_size']),
    (dict(min_size=16), ValueError, ['min_size', '16', '[32, 2048]']),
    (dict(max_size=5000), ValueError, ['max_size', '5000', '[32, 2048]']),
    (dict(seed='0'), TypeError, ['seed', "'0'", 'int']),
    (dict(seed=1.5), TypeError, ['seed', '1.5', 'int']),
    (dict(seed=True), TypeError, ['seed', 'True', 'int']),
    (dict(seed=-1), ValueError, ['seed', '-1', '>= 0']),
])
def test_bad_arguments(tmp_path, kwargs, error, words):
    args = dict(num_train=1, num_val=1)
    args.update(kwargs)
    with pytest.raises(error) as info:
        make_toy_coco(tmp_path / 'out', **args)
    assert all(w in str(info.value) for w in words), str(info.value)
    assert not (tmp_path / 'out').exists()  # checked before writing anything


def test_bad_arguments_of_other_generators(tmp_path):
    with pytest.raises(ValueError, match=r'num_val_per_class must be an int >= 1'):
        make_toy_imagenet(tmp_path, num_train_per_class=1, num_val_per_class=0)
    with pytest.raises(ValueError, match=r'ignore_border must be an int in \[0, 8\]'):
        make_toy_ade20k(tmp_path, num_train=1, num_val=1, ignore_border=9)
    with pytest.raises(TypeError, match='out_dir must be a str or os.PathLike'):
        make_toy_ade20k(None)


def test_out_dir_is_a_file(tmp_path):
    path = tmp_path / 'file'
    path.write_text('x')
    for make in (make_toy_coco, make_toy_ade20k, make_toy_imagenet):
        with pytest.raises(ValueError, match='out_dir .* exists and is not a folder'):
            make(path)


# ------------------------------------------------------------------------------- CLI
def _cli(*args):
    return subprocess.run(
        [sys.executable, str(REPO / 'tools' / 'misc' / 'make_toy_data.py'), *args],
        capture_output=True, text=True, cwd=str(REPO), timeout=120)


def test_cli(tmp_path):
    done = _cli('all', '--out', str(tmp_path), '--num-train', '2', '--num-val', '1',
                '--max-size', '128')
    assert done.returncode == 0, done.stderr
    for name in ('coco', 'ade20k', 'imagenet'):
        assert f'toy_{name}' in done.stdout
    coco = COCO(str(tmp_path / 'toy_coco' / 'annotations' / 'instances_train.json'))
    assert len(coco.imgs) == 2
    assert len(os.listdir(tmp_path / 'toy_ade20k' / 'annotations' / 'validation')) == 1
    lines = (tmp_path / 'toy_imagenet' / 'meta' / 'train.txt').read_text().splitlines()
    assert len(lines) == 2 * len(IMAGENET_CLASSES)

    same = make_toy_coco(tmp_path / 'api', num_train=2, num_val=1, max_size=128)
    assert _files(same['root']) == _files(tmp_path / 'toy_coco')


@pytest.mark.parametrize('args,words', [
    (['coco', '--num-train', '0'], ['num_train', '0']),
    (['imagenet', '--num-val', '0'], ['num_val_per_class', '0']),
    (['coco', '--seed', 'x'], ['--seed', "'x'"]),
    (['mnist'], ['mnist']),
])
def test_cli_bad_input(tmp_path, args, words):
    done = _cli(*args, '--out', str(tmp_path))
    assert done.returncode == 2
    assert 'Traceback' not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert all(w in done.stderr for w in words), done.stderr
