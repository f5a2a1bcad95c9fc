from .patch_embed import PatchEmbed, pad_to_multiple
from .simple_pyramid import LayerNorm2d, SimplePyramid, build_norm_2d
from .token_mixing import (TokenMixing, interpolation_matrix, mix_grid, mix_tokens,
                           resize_token_mixing)
from .traced_size import fixed_size_tracing, is_fixed_size_tracing, traced_size

__all__ = [
    'TokenMixing', 'interpolation_matrix', 'mix_grid', 'mix_tokens',
    'resize_token_mixing', 'PatchEmbed', 'pad_to_multiple', 'SimplePyramid',
    'LayerNorm2d', 'build_norm_2d', 'fixed_size_tracing', 'is_fixed_size_tracing',
    'traced_size'
]
