"""CheckSegMap: label maps that do not fit their image or the classes are refused
with a message naming the files; valid samples pass unchanged."""
import os.path as osp

import cv2
import numpy as np
import pytest
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope

from mmsmlp.datasets import CheckSegMap, InvalidSegMapError
from mmsmlp.datasets.toy_data import ADE20K_CLASSES, make_toy_ade20k

IMG = '/data/images/a.jpg'
SEG = '/data/annotations/a.png'


def sample(seg_hw=(40, 60), img_hw=(40, 60), values=(0, 1, 4, 255), **kw):
    seg = np.zeros(seg_hw, np.uint8)
    flat = seg.reshape(-1)
    flat[:len(values)] = values
    results = dict(img=np.zeros(img_hw + (3, ), np.uint8), ori_shape=img_hw,
                   img_shape=img_hw, gt_seg_map=seg, img_path=IMG, seg_map_path=SEG,
                   reduce_zero_label=True, seg_fields=['gt_seg_map'])
    results.update(kw)
    return results


@pytest.fixture
def log_file(tmp_path):
    """Make a fresh MMLogger the current one, writing to a file; return its path."""
    path = str(tmp_path / 'log.txt')
    MMLogger.get_instance(f'check_seg_map_{tmp_path.name}', log_file=path)
    return path


def read(path):
    for handler in MMLogger.get_current_instance().handlers:
        handler.flush()
    with open(path, encoding='utf-8') as f:
        return f.read()


def test_valid_sample_passes_unchanged():
    t = CheckSegMap(num_classes=5)
    results = sample()
    seg = results['gt_seg_map'].copy()
    out = t(results)
    assert out is results
    np.testing.assert_array_equal(out['gt_seg_map'], seg)


def test_test_pipeline_placement_compares_with_the_original_size():
    """mmseg's test pipelines resize the image before loading the annotations."""
    results = sample(seg_hw=(40, 60), img_hw=(80, 120), ori_shape=(40, 60))
    assert CheckSegMap(num_classes=5, on_invalid='raise')(results) is results


def test_size_mismatch_is_skipped_with_a_warning_naming_the_files(log_file):
    t = CheckSegMap(num_classes=5)
    assert t(sample(seg_hw=(41, 60))) is None
    log = read(log_file)
    assert 'WARNING' in log and 'CheckSegMap' in log
    assert SEG in log and IMG in log
    assert '60x41' in log and '60x40' in log  # label vs image size (WxH)


def test_out_of_range_label_is_skipped_with_a_warning(log_file):
    t = CheckSegMap(num_classes=5)
    assert t(sample(values=(0, 1, 7, 9, 255))) is None
    log = read(log_file)
    assert SEG in log and IMG in log
    assert 'label(s) 7, 9' in log and '[0, 4]' in log and 'ignore index 255' in log
    assert 'reduce_zero_label' in log  # hint: file values are label + 1


def test_each_file_is_reported_once(log_file):
    t = CheckSegMap(num_classes=5)
    for _ in range(3):
        assert t(sample(values=(6, ))) is None
    assert read(log_file).count(SEG) == 1


def test_raise_mode_names_the_files():
    t = CheckSegMap(num_classes=5, on_invalid='raise')
    with pytest.raises(InvalidSegMapError, match='a.png') as e:
        t(sample(values=(5, )))
    assert isinstance(e.value, ValueError)
    assert IMG in str(e.value) and 'label(s) 5' in str(e.value)
    with pytest.raises(ValueError, match='60x41'):
        t(sample(seg_hw=(41, 60)))


def test_multi_channel_label_map_is_invalid():
    with pytest.raises(ValueError, match=r'shape \(40, 60, 3\)'):
        CheckSegMap(num_classes=5, on_invalid='raise')(
            sample(gt_seg_map=np.zeros((40, 60, 3), np.uint8)))


def test_custom_ignore_index():
    t = CheckSegMap(num_classes=5, ignore_index=250, on_invalid='raise')
    assert t(sample(values=(0, 250))) is not None
    with pytest.raises(ValueError, match='label\\(s\\) 255'):
        t(sample(values=(0, 255)))


@pytest.mark.parametrize('kwargs,match', [
    (dict(num_classes=0), 'num_classes'),
    (dict(num_classes='5'), 'num_classes'),
    (dict(num_classes=5, ignore_index=None), 'ignore_index'),
    (dict(num_classes=5, on_invalid='drop'), 'on_invalid'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CheckSegMap(**kwargs)


def test_sample_without_label_map_passes():
    """mmseg's inference API drops LoadAnnotations from the test pipeline."""
    results = sample()
    del results['gt_seg_map']
    assert CheckSegMap(num_classes=5, on_invalid='raise')(results) is results


def test_builds_under_the_mmseg_scope():
    from mmseg.registry import TRANSFORMS
    with DefaultScope.overwrite_default_scope('mmseg'):
        t = TRANSFORMS.build(dict(type='CheckSegMap', num_classes=3))
    assert isinstance(t, CheckSegMap)
    assert 'num_classes=3' in repr(t)


def _toy_dataset(root, test_mode, on_invalid):
    from mmseg.datasets import BaseSegDataset
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'),
        dict(type='CheckSegMap', num_classes=len(ADE20K_CLASSES),
             on_invalid=on_invalid),
        dict(type='PackSegInputs')
    ]
    with DefaultScope.overwrite_default_scope('mmseg'):
        return BaseSegDataset(
            data_root=root, metainfo=dict(classes=ADE20K_CLASSES),
            data_prefix=dict(img_path='images/training',
                             seg_map_path='annotations/training'),
            img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True,
            test_mode=test_mode, pipeline=pipeline)


def test_dataset_replaces_invalid_training_samples_and_refuses_them_in_test(
        tmp_path, log_file):
    root = str(tmp_path / 'toy_ade20k')
    make_toy_ade20k(root, num_train=3, num_val=1, min_size=48, max_size=64)
    bad = osp.join(root, 'annotations', 'training', 'toy_train_000001.png')
    label = cv2.imread(bad, cv2.IMREAD_UNCHANGED)
    label[0, 0] = 9  # label 8 after reduce_zero_label: outside the 5 classes
    cv2.imwrite(bad, label)

    train = _toy_dataset(root, test_mode=False, on_invalid='skip')
    assert train[0]['data_samples'].seg_map_path.endswith('000000.png')
    for _ in range(5):  # the bad sample is replaced by a valid one
        assert not train[1]['data_samples'].seg_map_path.endswith('000001.png')
    assert 'toy_train_000001.png' in read(log_file)

    test = _toy_dataset(root, test_mode=True, on_invalid='raise')
    with pytest.raises(ValueError, match='toy_train_000001.png'):
        test[1]
