"""Affinity attention graph neural network (A2GNN, algorithm.md §3.3) on a sparse window graph, for ``K``
images at once.

Per layer, for node ``i`` and its window neighbours ``j`` inside the grid with ``cos(x_i, x_j) ≥ 0``:
``P_ij = softmax_j(β·cos(x_i, x_j) + 10·A_ij)``, ``x_i ← Σ_j P_ij x_j``, with
``cos = x_i·x_j / (‖x_i‖‖x_j‖ + 1e-7)``. This is the published dense formulation (masked entries there get
−1e9 and vanish) restricted to the window. The window sums run as batched matrix products over tiles
of nodes and their halos (``network.graph.TiledWindows``): ``O(N·(t+2r)²)`` memory and work, no ``N × N``.
The layer's backward pass is written out (``WindowAttention``): it keeps only the node embeddings, the
cosines and the attention of the tiles, and frees the halo before its gradient is allocated.

Several images train together as one module: every parameter carries a leading image axis ``K``
(image ``k``'s A2GNN is ``weight[k]``, ``beta[k]``), their graphs are disjoint parts of one
``network.graph.GraphBatch`` and each image's parameters only see its own nodes, so the gradient of the sum of
the images' losses is each image's own gradient, and an elementwise optimizer (Adam) over the stacked
tensors is exactly ``K`` independent ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from network.graph import GraphBatch, TiledWindows, WindowGraph

MASKED = -1e9  # logit of excluded pairs, as in the published dense code (exp underflows to exactly 0)
COS_EPS = 1e-7
AFFINITY_SCALE = 10.0

Generators = Sequence[torch.Generator | None]


def _device_of(generators: Generators) -> torch.device | None:
    return next((g.device for g in generators if g is not None), None)


class Linear(nn.Module):
    """``K`` bias-free maps: image ``k``'s rows ``x_k`` → ``x_k @ weight[k]``, ``weight``
    ``(K, in_features, out_features)``, each ``weight[k]`` Xavier-uniform from ``generators[k]`` (``None``:
    the global generator)."""

    def __init__(self, in_features: int, out_features: int, generators: Generators):
        super().__init__()
        bound = math.sqrt(6.0 / (in_features + out_features))
        weight = torch.empty(len(generators), in_features, out_features, device=_device_of(generators))
        for k, g in enumerate(generators):
            weight[k].uniform_(-bound, bound, generator=g)
        self.weight = nn.Parameter(weight)

    def forward(self, x: Tensor, sizes: Sequence[int]) -> Tensor:
        """x ``(Σ sizes, in)`` → ``(Σ sizes, out)``; ``sizes[k]`` consecutive rows belong to image ``k``."""
        if len(sizes) == 1:
            return x @ self.weight[0]
        return torch.cat([part @ w for part, w in zip(x.split(list(sizes)), self.weight, strict=True)])


class WindowAttention(torch.autograd.Function):
    """``(x (N, d), beta (K,), tiles) -> (N, d)``: one affinity attention layer with its gradients; tile
    ``t`` uses ``beta[tiles.image[t]]``."""

    @staticmethod
    def forward(ctx, x: Tensor, beta: Tensor, tiles: TiledWindows) -> Tensor:
        padded = torch.cat([x, x.new_zeros(1, x.shape[1])])  # row N: zero node outside the grid
        norm = padded.norm(dim=1)
        halo, center = _gather_tiles(padded, tiles)  # (T, s², d), (T, t², d)
        cos = torch.bmm(center, halo.transpose(1, 2)).div_(_norm_products(norm, tiles))  # (T, t², s²)
        logits = torch.addcmul(AFFINITY_SCALE * tiles.weight, _tile_beta(beta, tiles), cos)
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
        grad_beta = beta.new_zeros(beta.shape).index_add_(0, tiles.image, (grad_logits * cos).sum(dim=(1, 2)))
        # cos = dots / (‖x_i‖‖x_j‖ + ε)
        grad_dots = grad_logits.mul_(_tile_beta(beta, tiles)).div_(_norm_products(norm, tiles))
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


def _tile_beta(beta: Tensor, tiles: TiledWindows) -> Tensor:
    """``(T, 1, 1)``: the ``beta`` of each tile's image."""
    return beta.index_select(0, tiles.image)[:, None, None]


def _gather_tiles(padded: Tensor, tiles: TiledWindows) -> tuple[Tensor, Tensor]:
    """Halo ``(T, s², d)`` and centre ``(T, t², d)`` rows of ``padded`` ``(N + 1, d)``."""
    d = padded.shape[1]
    halo = padded.index_select(0, tiles.halo_index.view(-1)).view(*tiles.halo_index.shape, d)
    center = padded.index_select(0, tiles.center_index.view(-1)).view(*tiles.center_index.shape, d)
    return halo, center


def _norm_products(norm: Tensor, tiles: TiledWindows) -> Tensor:
    """``‖x_i‖‖x_j‖ + ε`` for the (centre, halo) pairs of the tiles: ``(T, t², s²)``."""
    return (norm[tiles.center_index][:, :, None] * norm[tiles.halo_index][:, None, :]).add_(COS_EPS)


def relu_dropout(x: Tensor, rate: float, generators: Generators = (None,),
                 sizes: Sequence[int] | None = None) -> Tensor:
    """``dropout(relu(x))`` in one pass: each entry is kept with probability ``1 − rate`` (a uniform draw
    ``≥ rate``, cheaper than Bernoulli sampling) and scaled by ``1 / (1 − rate)``. ``sizes[k]``
    consecutive rows of ``x`` draw from ``generators[k]`` (default: all rows, the global generator)."""
    if rate == 0:
        return F.relu(x)
    sizes = [x.shape[0]] if sizes is None else list(sizes)
    draws = [torch.rand(n, x.shape[1], generator=g, device=x.device, dtype=x.dtype)
             for n, g in zip(sizes, generators, strict=True)]
    keep = (x > 0) & ((draws[0] if len(draws) == 1 else torch.cat(draws)) >= rate)
    return torch.where(keep, x * (1 / (1 - rate)), 0)


class AffinityAttention(nn.Module):
    """One affinity attention propagation layer with a trainable scalar ``beta[k] ~ U(0, 1)`` per image."""

    def __init__(self, generators: Generators = (None,)):
        super().__init__()
        beta = torch.empty(len(generators), device=_device_of(generators))
        for k, g in enumerate(generators):
            beta[k:k + 1].uniform_(0, 1, generator=g)
        self.beta = nn.Parameter(beta)

    def forward(self, x: Tensor, tiles: TiledWindows) -> Tensor:
        """x: ``(N, d)`` node embeddings → ``(N, d)`` propagated embeddings."""
        return WindowAttention.apply(x, self.beta, tiles)


class A2GNN(nn.Module):
    """``forward(x (N, nfeat), graph) -> (logits (N, nclass), embedding (N, nhid))`` for ``K =
    len(generators)`` images (one by default).

    ``x = dropout(relu(x @ W_emb))``, ``nlayers`` affinity attention layers, ``logits = x @ W_out``. Node
    ``i = y·w + x`` of each image's grid; ``graph`` is a ``GraphBatch`` of ``K`` graphs (a ``WindowGraph``
    for ``K = 1``). No bias anywhere; dropout only in training mode. Parameters (the published names, with a leading
    image axis): ``embeddinglayer.weight (K, nfeat, nhid)``, ``attentionlayers.{l}.beta (K,)``,
    ``outputlayer.weight (K, nhid, nclass)``. ``generators[k]`` draws image ``k``'s initial parameters
    and dropout masks (``None``: the global generator), so an image's training does not depend on the
    other images it is batched with; the parameters are created on the generators' device. ``amp``: the
    embedding product (the largest, ``N × nfeat @ nfeat × nhid``) runs under bf16 autocast, its result is
    cast back to float32 (for speed on CUDA; on CPU it serves to measure the effect of the rounding).
    """

    def __init__(self, nfeat: int, nhid: int, nclass: int, nlayers: int, dropout_rate: float,
                 generators: Generators = (None,), amp: bool = False):
        super().__init__()
        self.dropout_rate = dropout_rate
        self.amp = amp
        self.generators = list(generators)
        self.embeddinglayer = Linear(nfeat, nhid, self.generators)
        self.attentionlayers = nn.ModuleList(AffinityAttention(self.generators) for _ in range(nlayers))
        self.outputlayer = Linear(nhid, nclass, self.generators)

    def forward(self, x: Tensor, graph: GraphBatch | WindowGraph) -> tuple[Tensor, Tensor]:
        if isinstance(graph, WindowGraph):
            graph = GraphBatch([graph])
        if len(graph.graphs) != len(self.generators):
            raise ValueError(f"A2GNN: {len(graph.graphs)} graphs for a model of {len(self.generators)} images")
        if x.shape[0] != graph.num_nodes:
            raise ValueError(f"A2GNN: {x.shape[0]} node features for a graph of {graph.num_nodes} nodes")
        sizes = graph.sizes
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.amp):
            embedded = self.embeddinglayer(x, sizes)
        x = relu_dropout(embedded.to(x.dtype), self.dropout_rate if self.training else 0.0, self.generators, sizes)
        tiles = graph.tiles
        for layer in self.attentionlayers:
            x = layer(x, tiles)
        return self.outputlayer(x, sizes), x
