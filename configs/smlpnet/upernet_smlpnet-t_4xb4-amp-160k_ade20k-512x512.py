# UperNet with sMLPNet-T on ADE20K, trained in fp16 mixed precision (CUDA) with a
# dynamic loss scale
_base_ = './upernet_smlpnet-t_4xb4-160k_ade20k-512x512.py'

optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic')
