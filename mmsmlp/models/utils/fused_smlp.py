"""sMLP's default token mixing as one autograd node with a hand-written backward.

The function computed (``x`` is ``(B, H, W, C)``, ``F = [F0 | F1 | F2]`` the
``(C, 3C)`` fuse weight)::

    out = shortcut + F0 x + F1 (A_w x + b_w) + F2 (A_h x + b_h)

with ``A_w`` / ``A_h`` the axial mixings along the width / height (biases
``b_w`` / ``b_h``, one per token). It equals ``fuse(concat[x, mix_w(x), mix_h(x)])``
plus the shortcut, without the ``3C`` concat.

Why a custom node: left to autograd, the sum of three products, the two biases and
the shortcut cost a dozen graph nodes, a full-size temporary per product and an
element-wise pass per sum, forward and backward. Here

* the axial biases are folded through the fuse: ``F1 (b_w[w] 1) = b_w[w] F1.sum(1)``,
  so both become one small ``(H, W, C)`` map;
* forward: ``out`` starts as ``shortcut + bias map`` and takes the three products
  in place (GEMMs with ``beta = 1``);
* backward: the input gradient ``F0^T g + A_w^T (F1^T g) + A_h^T (F2^T g)`` is
  accumulated the same way, one temporary reused for both axes.

Only the straightforward operations are differentiable twice; this node is
``once_differentiable`` and used for eager execution. jit tracing (mmengine's
FlopAnalyzer, which does not count in-place products) and ``torch.compile`` (which
fuses the element-wise work itself) take the plain formulation in
:class:`mmsmlp.models.backbones.smlpnet.SparseMLP`; tests check that both agree.
"""
from typing import Optional

import torch
from torch.autograd.function import once_differentiable

from .token_mixing import mix_tokens

__all__ = ['fused_sparse_mlp', 'fast_paths_enabled', 'records_grad']


def fast_paths_enabled() -> bool:
    """Whether the fused and in-place paths of the blocks apply: in eager mode.
    jit tracing (mmengine's FlopAnalyzer counts out-of-place ``linear``/``bmm``,
    not in-place products) and ``torch.compile`` (which fuses element-wise work
    itself) take the plain formulation."""
    return not (torch.jit.is_tracing() or torch.compiler.is_compiling())


def records_grad(*tensors: Optional[torch.Tensor]) -> bool:
    """Whether autograd records an operation on ``tensors``; when it does not
    (inference, frozen stages) fresh buffers may be reused in place."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                           for t in tensors)


def _bias_map(row_sums, bias_w, bias_h):
    """The ``(H, W, C)`` map the two axial biases leave after the fuse;
    ``row_sums`` is the ``(C, 3)`` sum of each fuse block over its inputs."""
    h, w = bias_h.numel(), bias_w.numel()
    return bias_w.view(1, w, 1) * row_sums[:, 1] + bias_h.view(h, 1, 1) * row_sums[:, 2]


def _forward(x, weight_w, bias_w, weight_h, bias_h, fuse_weight, shortcut,
             for_backward: bool):
    """The forward computation; returns ``out`` and, when ``for_backward``, the
    tensors the backward needs (else one buffer serves both axial products)."""
    b, h, w, c = x.shape
    x = x.contiguous()
    row_sums = fuse_weight.view(c, 3, c).sum(2)
    bias = _bias_map(row_sums, bias_w, bias_h)
    if shortcut is None:
        out = bias.expand(b, h, w, c).contiguous()
    else:
        out = torch.add(shortcut, bias, out=torch.empty_like(x))
    rows = out.view(-1, c)
    f_id, f_w, f_h = fuse_weight.chunk(3, dim=1)
    rows.addmm_(x.view(-1, c), f_id.t())
    x_w = mix_tokens(x, weight_w, None, dim=2)
    rows.addmm_(x_w.view(-1, c), f_w.t())
    # x_w is spent unless the backward needs it: its buffer takes x_h
    x_h = mix_tokens(x, weight_h, None, dim=1, out=None if for_backward else x_w)
    rows.addmm_(x_h.view(-1, c), f_h.t())
    if not for_backward:
        return out, None
    return out, (x, x_w, x_h, weight_w, bias_w, weight_h, bias_h, fuse_weight,
                 row_sums)


class _FusedSparseMLP(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, weight_w, bias_w, weight_h, bias_h, fuse_weight,
                shortcut):
        out, saved = _forward(x, weight_w, bias_w, weight_h, bias_h, fuse_weight,
                              shortcut, for_backward=True)
        ctx.save_for_backward(*saved)
        ctx.has_shortcut = shortcut is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (x, x_w, x_h, weight_w, bias_w, weight_h, bias_h, fuse_weight,
         row_sums) = ctx.saved_tensors
        b, h, w, c = x.shape
        grad = grad.contiguous()
        g = grad.view(-1, c)
        f_id, f_w, f_h = fuse_weight.chunk(3, dim=1)
        need = ctx.needs_input_grad
        grad_x = grad_ww = grad_bw = grad_wh = grad_bh = grad_fuse = None

        # the bias map: (H, W, C) gradient summed over the batch
        gmap = grad.sum(0)
        g_over_w, g_over_h = gmap.sum(0), gmap.sum(1)  # (W, C), (H, C)
        if need[2]:
            grad_bw = g_over_w @ row_sums[:, 1]
        if need[4]:
            grad_bh = g_over_h @ row_sums[:, 2]
        if need[5]:
            # each block's product written in place (a cat would copy them)
            grad_fuse = g.new_empty(c, 3 * c)
            blocks = grad_fuse.split(c, dim=1)
            for block, t in zip(blocks, (x, x_w, x_h)):
                torch.mm(g.t(), t.view(-1, c), out=block)
            # through the folded biases: d(b[w] * F.sum(1)[o]) / dF[o, :]
            blocks[1].add_((bias_w @ g_over_w).unsqueeze(1))
            blocks[2].add_((bias_h @ g_over_h).unsqueeze(1))

        if need[0] or need[1] or need[3]:
            branch_grad = (g @ f_w).view(b, h, w, c)  # gradient of x_w
            if need[1]:
                grad_ww = torch.bmm(branch_grad.view(-1, w, c),
                                    x.view(-1, w, c).transpose(1, 2)).sum(0)
            if need[0]:
                grad_x = (g @ f_id).view(b, h, w, c)
                grad_x.view(-1, w, c).baddbmm_(
                    weight_w.t().expand(b * h, w, w), branch_grad.view(-1, w, c))
            torch.mm(g, f_h, out=branch_grad.view(-1, c))  # now: gradient of x_h
            if need[3]:
                grad_wh = torch.bmm(branch_grad.view(b, h, -1),
                                    x.view(b, h, -1).transpose(1, 2)).sum(0)
            if need[0]:
                grad_x.view(b, h, -1).baddbmm_(
                    weight_h.t().expand(b, h, h), branch_grad.view(b, h, -1))
        grad_shortcut = grad if ctx.has_shortcut and need[6] else None
        return grad_x, grad_ww, grad_bw, grad_wh, grad_bh, grad_fuse, grad_shortcut


def fused_sparse_mlp(x: torch.Tensor,
                     weight_w: torch.Tensor,
                     bias_w: torch.Tensor,
                     weight_h: torch.Tensor,
                     bias_h: torch.Tensor,
                     fuse_weight: torch.Tensor,
                     shortcut: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``shortcut + fuse(concat[x, mix_w(x), mix_h(x)])`` as one node.

    Args:
        x (Tensor): ``(B, H, W, C)``.
        weight_w, bias_w (Tensor): ``(W, W)`` and ``(W,)``, mixing along the width.
        weight_h, bias_h (Tensor): ``(H, H)`` and ``(H,)``, mixing along the height.
        fuse_weight (Tensor): ``(C, 3C)``, input blocks in the order
            ``[x, mix_w(x), mix_h(x)]``.
        shortcut (Tensor, optional): ``(B, H, W, C)``, added to the result.

    All tensors must share one dtype and device (cast them before, e.g. to the
    autocast type: the in-place products are not autocast-aware).

    Returns:
        Tensor: ``(B, H, W, C)``, contiguous.
    """
    tensors = (x, weight_w, bias_w, weight_h, bias_h, fuse_weight, shortcut)
    if records_grad(*tensors):
        return _FusedSparseMLP.apply(*tensors)
    return _forward(*tensors, for_backward=False)[0]
