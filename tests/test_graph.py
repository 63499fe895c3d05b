import pytest
import torch

from tool.graph import random_walk, window_graph

SHAPES = [(5, 7, 1), (6, 4, 2), (9, 11, 3), (3, 3, 4), (8, 10, 4)]


def loop_graph(aff, radius, self_weight):
    """Plain-loop reference: dense (N, N) weights and edge mask."""
    d, _, h, w = aff.shape
    weights = torch.zeros(h * w, h * w, dtype=aff.dtype)
    edges = torch.zeros(h * w, h * w, dtype=torch.bool)
    for y in range(h):
        for x in range(w):
            for a in range(d):
                for b in range(d):
                    yy, xx = y + a - radius, x + b - radius
                    if 0 <= yy < h and 0 <= xx < w:
                        centre = a == radius and b == radius
                        value = self_weight if centre and self_weight is not None else aff[a, b, y, x]
                        weights[y * w + x, yy * w + xx] = value
                        edges[y * w + x, yy * w + xx] = True
    return weights, edges


@pytest.mark.parametrize("h,w,radius", SHAPES)
@pytest.mark.parametrize("self_weight", [1.0, None])
def test_window_graph_equals_loop(h, w, radius, self_weight):
    torch.manual_seed(h * w + radius)
    aff = torch.rand(2 * radius + 1, 2 * radius + 1, h, w, dtype=torch.float64)
    graph = window_graph(aff, radius, self_weight=self_weight)
    weights, edges = graph.to_dense()
    ref_weights, ref_edges = loop_graph(aff, radius, self_weight)
    assert torch.equal(edges, ref_edges)
    assert torch.equal(weights, ref_weights)
    assert graph.index.shape == (h * w, (2 * radius + 1) ** 2)
    # every invalid slot has weight 0 and a gatherable (in-range) index
    assert (graph.weight[~graph.valid] == 0).all()
    assert graph.index.min() >= 0 and graph.index.max() < h * w


@pytest.mark.parametrize("h,w,radius", SHAPES)
def test_reverse_weight_is_transpose(h, w, radius):
    torch.manual_seed(1)
    graph = window_graph(torch.rand(2 * radius + 1, 2 * radius + 1, h, w), radius)
    dense, _ = graph.to_dense()
    reverse = graph.reverse_weight()
    for j in range(h * w):
        for k in range(graph.index.shape[1]):
            expected = dense[graph.index[j, k], j] if graph.valid[j, k] else 0.0
            assert reverse[j, k] == expected


@pytest.mark.parametrize("h,w,radius", SHAPES)
@pytest.mark.parametrize("tile", [1, 3, 7])
def test_tiled_layout_holds_the_same_graph(h, w, radius, tile):
    torch.manual_seed(2)
    graph = window_graph(torch.rand(2 * radius + 1, 2 * radius + 1, h, w), radius)
    tiles = graph.tiled(tile)
    n = h * w
    weights = torch.zeros(n, n)
    edges = torch.zeros(n, n, dtype=torch.bool)
    for t in range(tiles.center_index.shape[0]):
        for p, i in enumerate(tiles.center_index[t].tolist()):
            for q, j in enumerate(tiles.halo_index[t].tolist()):
                if tiles.mask[t, p, q]:
                    assert i < n and j < n
                    edges[i, j] = True
                    weights[i, j] = tiles.weight[t, p, q]
    # every node sits once among the centres, at node_slot
    assert torch.equal(tiles.center_index.reshape(-1)[tiles.node_slot], torch.arange(n))
    ref_weights, ref_edges = graph.to_dense()
    assert torch.equal(edges, ref_edges)
    assert torch.equal(weights, ref_weights)


def test_wrong_affinity_shape_is_refused():
    with pytest.raises(ValueError, match="2r\\+1"):
        window_graph(torch.rand(7, 7, 4, 4), radius=4)


@pytest.mark.parametrize("radius,logt", [(1, 3), (3, 4), (4, 2)])
def test_random_walk_equals_dense_repeated_squaring(radius, logt):
    torch.manual_seed(4)
    h, w, beta = 7, 9, 8
    aff = torch.rand(2 * radius + 1, 2 * radius + 1, h, w, dtype=torch.float64) * 0.5 + 0.5
    graph = window_graph(aff, radius, self_weight=None)
    dense, _ = graph.to_dense()
    trans = dense.pow(beta)
    trans = trans / trans.sum(dim=0, keepdim=True)
    for _ in range(logt):
        trans = trans @ trans
    scores = torch.rand(5, h, w, dtype=torch.float64)
    ref = (scores.reshape(5, -1) @ trans).reshape(5, h, w)
    torch.testing.assert_close(random_walk(scores, graph, beta, logt), ref, rtol=1e-9, atol=1e-12)
