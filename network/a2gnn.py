"""Affinity attention graph neural network (A2GNN, algorithm.md §3.3) on a sparse window graph.

Per layer, for node ``i`` and its window neighbours ``j`` inside the grid with ``cos(x_i, x_j) ≥ 0``:
``P_ij = softmax_j(β·cos(x_i, x_j) + 10·A_ij)``, ``x_i ← Σ_j P_ij x_j``, with
``cos = x_i·x_j / (‖x_i‖‖x_j‖ + 1e-7)``. This is the published dense formulation (masked entries there get
−1e9 and vanish) restricted to the window. The window sums run as batched matrix products over tiles
of nodes and their halos (``network.graph.TiledWindows``): ``O(N·(t+2r)²)`` memory and work, no ``N × N``.
The layer's backward pass is written out (``WindowAttention``): it keeps only the node embeddings, the
cosines and the attention of the tiles, and frees the halo before its gradient is allocated.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from network.graph import TiledWindows, WindowGraph

MASKED = -1e9  # logit of excluded pairs, as in the published dense code (exp underflows to exactly 0)
COS_EPS = 1e-7
AFFINITY_SCALE = 10.0


class Linear(nn.Module):
    """Bias-free ``x @ weight`` with ``weight`` ``(in_features, out_features)``, Xavier-uniform init."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.weight


class WindowAttention(torch.autograd.Function):
    """``(x (N, d), beta (1,), tiles) -> (N, d)``: one affinity attention layer with its gradients."""

    @staticmethod
    def forward(ctx, x: Tensor, beta: Tensor, tiles: TiledWindows) -> Tensor:
        padded = torch.cat([x, x.new_zeros(1, x.shape[1])])  # row N: zero node outside the grid
        norm = padded.norm(dim=1)
        halo, center = _gather_tiles(padded, tiles)  # (T, s², d), (T, t², d)
        cos = torch.bmm(center, halo.transpose(1, 2)).div_(_norm_products(norm, tiles))  # (T, t², s²)
        logits = torch.addcmul(AFFINITY_SCALE * tiles.weight, beta, cos)
        attention = F.softmax(logits.masked_fill_(tiles.excluded | (cos < 0), MASKED), dim=-1)
        ctx.tiles = tiles
        ctx.save_for_backward(padded, norm, beta, cos, attention)
        return torch.bmm(attention, halo).view(-1, x.shape[1]).index_select(0, tiles.node_slot)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        padded, norm, beta, cos, attention = ctx.saved_tensors
        tiles = ctx.tiles
        d = padded.shape[1]
        halo, center = _gather_tiles(padded, tiles)
        grad_out = grad.new_zeros(center.shape).view(-1, d).index_copy_(0, tiles.node_slot, grad)
        grad_out = grad_out.view(center.shape)  # rows of centres outside the grid stay 0
        # softmax backward; excluded pairs have attention 0 (or a zero row gradient) and get 0 here
        grad_logits = torch.bmm(grad_out, halo.transpose(1, 2))
        grad_logits.sub_((attention * grad_logits).sum(dim=-1, keepdim=True)).mul_(attention)
        grad_beta = (grad_logits * cos).sum().view(1)
        grad_dots = grad_logits.mul_(beta).div_(_norm_products(norm, tiles))  # cos = dots / (‖x_i‖‖x_j‖ + ε)
        grad_center = torch.bmm(grad_dots, halo)
        del halo  # the largest tensor: free it before the halo gradient is allocated
        grad_padded = torch.zeros_like(padded).index_add_(0, tiles.center_index.view(-1), grad_center.view(-1, d))
        del grad_center
        grad_halo = torch.bmm(attention.transpose(1, 2), grad_out).baddbmm_(grad_dots.transpose(1, 2), center)
        grad_padded.index_add_(0, tiles.halo_index.view(-1), grad_halo.view(-1, d))
        del grad_halo
        # ∂/∂(‖x_i‖‖x_j‖) = −grad_dots·cos, times the other norm, summed onto each node's norm
        grad_prod = (grad_dots * cos).neg_()
        grad_norm = norm.new_zeros(norm.shape)
        grad_norm.index_add_(0, tiles.center_index.view(-1),
                             torch.bmm(grad_prod, norm[tiles.halo_index][:, :, None]).view(-1))
        grad_norm.index_add_(0, tiles.halo_index.view(-1),
                             torch.bmm(grad_prod.transpose(1, 2), norm[tiles.center_index][:, :, None]).view(-1))
        grad_padded.addcmul_(padded, torch.where(norm > 0, grad_norm / norm, 0)[:, None])  # ∂‖x‖/∂x = x/‖x‖
        return grad_padded[:-1], grad_beta, None


def _gather_tiles(padded: Tensor, tiles: TiledWindows) -> tuple[Tensor, Tensor]:
    """Halo ``(T, s², d)`` and centre ``(T, t², d)`` rows of ``padded`` ``(N + 1, d)``."""
    d = padded.shape[1]
    halo = padded.index_select(0, tiles.halo_index.view(-1)).view(*tiles.halo_index.shape, d)
    center = padded.index_select(0, tiles.center_index.view(-1)).view(*tiles.center_index.shape, d)
    return halo, center


def _norm_products(norm: Tensor, tiles: TiledWindows) -> Tensor:
    """``‖x_i‖‖x_j‖ + ε`` for the (centre, halo) pairs of the tiles: ``(T, t², s²)``."""
    return (norm[tiles.center_index][:, :, None] * norm[tiles.halo_index][:, None, :]).add_(COS_EPS)


def relu_dropout(x: Tensor, rate: float) -> Tensor:
    """``dropout(relu(x))`` in one pass: each entry is kept with probability ``1 − rate`` (a uniform draw
    ``≥ rate``, cheaper than Bernoulli sampling) and scaled by ``1 / (1 − rate)``."""
    if rate == 0:
        return F.relu(x)
    keep = (x > 0) & (torch.rand_like(x) >= rate)
    return torch.where(keep, x * (1 / (1 - rate)), 0)


class AffinityAttention(nn.Module):
    """One affinity attention propagation layer with a trainable scalar ``beta ~ U(0, 1)``."""

    def __init__(self):
        super().__init__()
        self.beta = nn.Parameter(torch.empty(1).uniform_(0, 1))

    def forward(self, x: Tensor, tiles: TiledWindows) -> Tensor:
        """x: ``(N, d)`` node embeddings → ``(N, d)`` propagated embeddings."""
        return WindowAttention.apply(x, self.beta, tiles)


class A2GNN(nn.Module):
    """``forward(x (N, nfeat), graph) -> (logits (N, nclass), embedding (N, nhid))``.

    ``x = dropout(relu(x @ W_emb))``, ``nlayers`` affinity attention layers, ``logits = x @ W_out``. Node
    ``i = y·w + x`` of the graph's grid. No bias anywhere; dropout only in training mode.
    """

    def __init__(self, nfeat: int, nhid: int, nclass: int, nlayers: int, dropout_rate: float):
        super().__init__()
        self.dropout_rate = dropout_rate
        self.embeddinglayer = Linear(nfeat, nhid)
        self.attentionlayers = nn.ModuleList(AffinityAttention() for _ in range(nlayers))
        self.outputlayer = Linear(nhid, nclass)

    def forward(self, x: Tensor, graph: WindowGraph) -> tuple[Tensor, Tensor]:
        if x.shape[0] != graph.num_nodes:
            raise ValueError(f"A2GNN: {x.shape[0]} node features for a graph of {graph.num_nodes} nodes")
        x = relu_dropout(self.embeddinglayer(x), self.dropout_rate if self.training else 0.0)
        tiles = graph.tiles
        for layer in self.attentionlayers:
            x = layer(x, tiles)
        return self.outputlayer(x), x
