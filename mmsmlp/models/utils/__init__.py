from .token_mixing import (TokenMixing, interpolation_matrix, mix_tokens,
                           resize_token_mixing)

__all__ = ['TokenMixing', 'interpolation_matrix', 'mix_tokens', 'resize_token_mixing']
