"""sMLPNet with the module structure and key names of the official code
(microsoft/SPACH ``models/smlp.py``), written from its description in
``smlpnet-facts.md``: the reference for the converter tests and for the
straightforward-vs-fast comparisons of the sMLP block.

It computes the same function as :class:`mmsmlp.models.SMLPNet` at the training
resolution (the axial weights are ``Conv2d(N, N, 1)`` applied after permutes, so it
only accepts square inputs of that size), but with the straightforward formulation:
permute + 1x1 conv per axis, the 3C-channel concat, a 1x1 conv fuse, LayerNorm
through permutes.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['OfficialSMLPNet', 'OfficialSparseMLP']


class ToChannelsLast(nn.Module):
    """(B, C, H, W) -> (B, H, W, C) and back (``inverse=True``); no parameters."""

    def __init__(self, inverse=False):
        super().__init__()
        self.inverse = inverse

    def forward(self, x):
        return x.movedim(-1, 1) if self.inverse else x.movedim(1, -1)


class FeedForward(nn.Module):
    """``net``: Linear(C, hC) -> GELU -> Dropout -> Linear(hC, C) -> Dropout."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.),
                                 nn.Linear(hidden, dim), nn.Dropout(0.))

    def forward(self, x):
        return self.net(x)


class NormActDWConv(nn.Module):
    """``BN -> GELU -> depthwise 3x3 conv`` (no bias), keys ``BN``/``Conv``."""

    def __init__(self, channels):
        super().__init__()
        self.BN = nn.BatchNorm2d(channels)
        self.Conv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels,
                              bias=False)

    def forward(self, x):
        return self.Conv(F.gelu(self.BN(x)))


class DWConvBlock(nn.Module):

    def __init__(self, channels):
        super().__init__()
        self.conv_merge = NormActDWConv(channels)

    def forward(self, x):
        return self.conv_merge(x)


class OfficialSparseMLP(nn.Module):
    """BN -> GELU -> fuse(concat[x, proj_h-branch, proh_w-branch]).

    As in the official code, ``proj_h`` is applied with the WIDTH axis moved to
    the channel position (so it mixes along the width) and ``proh_w`` with the
    HEIGHT axis there (it mixes along the height), despite their names.
    Input and output (B, C, H, W) with H == W == n.
    """

    def __init__(self, n, channels):
        super().__init__()
        self.BN = nn.BatchNorm2d(channels)
        self.proj_h = nn.Conv2d(n, n, 1)
        self.proh_w = nn.Conv2d(n, n, 1)
        self.fuse = nn.Conv2d(3 * channels, channels, 1, bias=False)

    def forward(self, x):
        x = F.gelu(self.BN(x))                              # (B, C, H, W)
        along_w = self.proj_h(x.movedim(3, 1)).movedim(1, 3)  # via (B, W, C, H)
        along_h = self.proh_w(x.transpose(1, 2)).transpose(1, 2)  # via (B, H, C, W)
        return self.fuse(torch.cat([x, along_w, along_h], dim=1))


class OfficialSMLPNet(nn.Module):
    """Flat module lists ``to_patch_embedding``, ``token_mix``, ``channel_mix``
    (indexed by the global block number), ``batch_norm`` and ``mlp_head``."""

    def __init__(self, embed_dims, depths, mlp_ratio, num_classes, img_size=224):
        super().__init__()
        self.depths = list(depths)
        self.to_patch_embedding = nn.ModuleList()
        self.token_mix = nn.ModuleList()
        self.channel_mix = nn.ModuleList()
        grid = img_size // 4
        for i, depth in enumerate(depths):
            c = embed_dims * 2**i
            if i == 0:
                conv = nn.Conv2d(3, c, 4, stride=4, bias=False)
            else:
                conv = nn.Conv2d(c // 2, c, 2, stride=2, bias=False)
            self.to_patch_embedding.append(nn.Sequential(conv))
            n = grid // 2**i
            for _ in range(depth):
                self.token_mix.append(
                    nn.Sequential(DWConvBlock(c), OfficialSparseMLP(n, c)))
                self.channel_mix.append(
                    nn.Sequential(ToChannelsLast(), nn.LayerNorm(c),
                                  FeedForward(c, c * mlp_ratio),
                                  ToChannelsLast(inverse=True)))
        c_last = embed_dims * 2**(len(depths) - 1)
        self.batch_norm = nn.BatchNorm2d(c_last)
        self.mlp_head = nn.Sequential(nn.Linear(c_last, num_classes))

    def forward(self, x):
        b = 0
        for i, depth in enumerate(self.depths):
            x = self.to_patch_embedding[i](x)
            for _ in range(depth):
                x = x + self.token_mix[b](x)
                x = x + self.channel_mix[b](x)
                b += 1
        x = self.batch_norm(x).mean(dim=(2, 3))
        return self.mlp_head(x)
