_base_ = './mask-rcnn_smlpnet-t_fpn_1x_coco.py'

# fp16 mixed precision with a dynamic loss scale (CUDA)
optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic')
