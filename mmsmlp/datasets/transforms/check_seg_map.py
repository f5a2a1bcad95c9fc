"""A pipeline step that refuses semantic-segmentation samples whose label map does
not fit their image, so that a few broken files do not stop (or silently spoil)
a training run."""
import logging
from typing import Optional

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.logging import print_log
from mmsmlp.registry import TRANSFORMS

__all__ = ['CheckSegMap', 'InvalidSegMapError']

ON_INVALID = ('skip', 'raise')


class InvalidSegMapError(ValueError):
    """A label map does not fit its image or holds labels outside the classes."""


# Registered in mmengine's root TRANSFORMS: mmseg's (and mmdet's) registries fall
# back to it, so ``type='CheckSegMap'`` builds under any default scope.
@TRANSFORMS.register_module()
class CheckSegMap(BaseTransform):
    """Check a loaded label map against its image and the class range.

    Place it right after mmseg's ``LoadAnnotations``. A sample is *invalid* when

    * its label map is not a 2-D ``(H, W)`` array,
    * its size differs from the image's original size (``ori_shape``, set by
      ``LoadImageFromFile``; this also holds in mmseg's test pipelines, which
      resize the image *before* loading the annotations), or
    * it holds a label outside ``[0, num_classes)`` other than ``ignore_index``.
      Labels are checked as loaded, i.e. after ``reduce_zero_label`` (which makes
      file value ``v`` label ``v - 1`` and file value 0 the ignore index 255) and
      after the dataset's ``label_map``.

    What happens to an invalid sample depends on ``on_invalid``:

    * ``'skip'`` (training pipelines): a warning naming the image file, the label
      file and the problem is logged and the transform returns ``None``;
      mmengine's ``BaseDataset`` then fetches another, random sample, so training
      goes on with the valid samples only. Each file is reported once per process.
    * ``'raise'`` (validation / test pipelines): an :class:`InvalidSegMapError`
      (a ``ValueError``) with the same message is raised. Evaluation cannot skip a
      sample (mmengine raises a bare "should not get None" error in test mode and
      would substitute another image otherwise, biasing the metric), so the file
      has to be fixed or removed.

    A transform cannot tell which of the two situations it runs in (mmseg's
    validation sets do not set ``test_mode``), hence the explicit argument.

    A sample without a label map passes unchanged: mmseg's inference API
    (``inference_model``, ``MMSegInferencer``) drops ``LoadAnnotations`` from the
    test pipeline of a config.

    Required keys: ``img`` or ``ori_shape``; ``gt_seg_map`` (checked when present);
    ``img_path`` and ``seg_map_path`` name the files in the message.

    Args:
        num_classes (int): Number of classes of the dataset (e.g. 150 for
            ADE20K).
        ignore_index (int): Label that marks unlabelled pixels. Defaults to 255,
            mmseg's ignore index (and what ``reduce_zero_label`` writes).
        on_invalid (str): ``'skip'`` or ``'raise'``, see above. Defaults to
            ``'skip'``.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255,
                 on_invalid: str = 'skip'):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) \
                or num_classes < 1:
            raise ValueError(f'CheckSegMap: num_classes must be an int >= 1, got '
                             f'{num_classes!r}')
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise ValueError(f'CheckSegMap: ignore_index must be an int, got '
                             f'{ignore_index!r}')
        if on_invalid not in ON_INVALID:
            raise ValueError(f'CheckSegMap: on_invalid must be one of {ON_INVALID}, '
                             f'got {on_invalid!r}')
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.on_invalid = on_invalid
        self._reported = set()

    def problem(self, results: dict) -> Optional[str]:
        """What is wrong with the sample in ``results``; None when it is valid."""
        if results.get('gt_seg_map') is None:
            return None  # inference: no label map loaded, nothing to check
        seg = np.asarray(results['gt_seg_map'])
        if seg.ndim != 2:
            return (f'the label map has shape {seg.shape}, expected a single-channel '
                    f'(H, W) image')
        if results.get('ori_shape') is not None:
            img_hw = tuple(results['ori_shape'][:2])
        elif results.get('img') is not None:
            img_hw = tuple(results['img'].shape[:2])
        else:
            raise KeyError('CheckSegMap: neither ori_shape nor img in the results; '
                           'place it after LoadImageFromFile')
        if seg.shape != img_hw:
            return (f'the label map is {seg.shape[1]}x{seg.shape[0]} (WxH) but the '
                    f'image is {img_hw[1]}x{img_hw[0]}')
        values = np.unique(seg)
        bad = values[((values < 0) | (values >= self.num_classes))
                     & (values != self.ignore_index)]
        if bad.size:
            shown = ', '.join(str(v) for v in bad[:10].tolist())
            more = f' ({bad.size} values in all)' if bad.size > 10 else ''
            count = int(np.isin(seg, bad).sum())
            hint = ''
            if results.get('reduce_zero_label'):
                hint = (' (after reduce_zero_label, which maps file value v to '
                        'v - 1 and 0 to the ignore index)')
            return (f'{count} pixel(s) have label(s) {shown}{more}, outside the '
                    f'{self.num_classes} classes [0, {self.num_classes - 1}] and '
                    f'not the ignore index {self.ignore_index}{hint}')
        return None

    def transform(self, results: dict) -> Optional[dict]:
        """Return ``results`` unchanged when the sample is valid; otherwise
        ``None`` (``on_invalid='skip'``) or raise :class:`InvalidSegMapError`."""
        problem = self.problem(results)
        if problem is None:
            return results
        img_path = results.get('img_path', '<unknown image>')
        seg_path = results.get('seg_map_path', '<unknown label file>')
        msg = f'invalid label map {seg_path!r} for image {img_path!r}: {problem}'
        if self.on_invalid == 'raise':
            raise InvalidSegMapError(f'CheckSegMap: {msg}; fix or remove the file')
        if seg_path not in self._reported:
            self._reported.add(seg_path)
            print_log(f'CheckSegMap: skipping the sample: {msg}', logger='current',
                      level=logging.WARNING)
        return None

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_classes={self.num_classes}, '
                f'ignore_index={self.ignore_index}, '
                f'on_invalid={self.on_invalid!r})')
