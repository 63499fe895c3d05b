"""Affinity attention graph neural network (A2GNN, SPEC §3.3) on a sparse window graph.

Per layer, for node ``i`` and its window neighbours ``j`` inside the grid with ``cos(x_i, x_j) ≥ 0``:
``P_ij = softmax_j(β·cos(x_i, x_j) + 10·A_ij)``, ``x_i ← Σ_j P_ij x_j``, with
``cos = x_i·x_j / (‖x_i‖‖x_j‖ + 1e-7)``. This is the published dense formulation (masked entries there get
−1e9 and vanish) restricted to the window. The window sums run as batched matrix products over tiles
of nodes and their halos (``tool.graph.TiledWindows``): ``O(N·(t+2r)²)`` memory and work, no ``N × N``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tool.graph import TiledWindows, WindowGraph

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


class AffinityAttention(nn.Module):
    """One affinity attention propagation layer with a trainable scalar ``beta ~ U(0, 1)``."""

    def __init__(self):
        super().__init__()
        self.beta = nn.Parameter(torch.empty(1).uniform_(0, 1))

    def forward(self, x: Tensor, tiles: TiledWindows) -> Tensor:
        """x: ``(N, d)`` node embeddings → ``(N, d)`` propagated embeddings."""
        padded = torch.cat([x, x.new_zeros(1, x.shape[1])])  # row N: zero node outside the grid
        norm = padded.norm(dim=1)
        halo = padded[tiles.halo_index]  # (T, s², d)
        center = padded[tiles.center_index]  # (T, t², d)
        dots = torch.bmm(center, halo.transpose(1, 2))  # (T, t², s²)
        cos = dots / (norm[tiles.center_index][:, :, None] * norm[tiles.halo_index][:, None, :] + COS_EPS)
        logits = self.beta * cos + AFFINITY_SCALE * tiles.weight
        logits = logits.masked_fill(~tiles.mask | (cos < 0), MASKED)
        out = torch.bmm(F.softmax(logits, dim=-1), halo)  # (T, t², d)
        return out.reshape(-1, x.shape[1])[tiles.node_slot]


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
        x = F.dropout(F.relu(self.embeddinglayer(x)), self.dropout_rate, training=self.training)
        tiles = graph.tiles
        for layer in self.attentionlayers:
            x = layer(x, tiles)
        return self.outputlayer(x), x
