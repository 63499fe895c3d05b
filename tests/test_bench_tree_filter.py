"""benchmarks/bench_tree_filter.py measures a right tree filter: its spanning tree is the grid's minimum one, and
the two-pass filter and its gradients equal the dense product-of-path-weights filter on small random maps."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_tree_filter.py"

pytestmark = pytest.mark.usefixtures("one_thread")


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_tree_filter", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


def tree_edges(tree):
    """The tree's edges as node pairs (child node, parent node)."""
    order = tree.order.numpy()
    return [(int(order[k]), int(order[tree.parent[k]])) for k in range(1, len(order))]


def path_edges(edges, n):
    """For every node pair, the list of edge indices on its tree path (a walk up from both ends)."""
    up = {child: (parent, i) for i, (child, parent) in enumerate(edges)}

    def ancestors(node):
        chain = [(node, None)]
        while node in up:
            node, i = up[node]
            chain.append((node, i))
        return chain

    paths = {}
    for a in range(n):
        chain_a = ancestors(a)
        for b in range(n):
            chain_b = ancestors(b)
            nodes_b = [node for node, _ in chain_b]
            meet = next(k for k, (node, _) in enumerate(chain_a) if node in nodes_b)
            meet_b = nodes_b.index(chain_a[meet][0])
            paths[a, b] = [i for _, i in chain_a[1:meet + 1]] + [i for _, i in chain_b[1:meet_b + 1]]
    return paths


def dense_tree_filter(x, embed, edges, groups):
    """Reference: y_i = Σ_j S_ij x_j / Σ_j S_ij with S_ij = exp(−Σ over the path of ‖e_u − e_v‖²), per group."""
    channels, height, width = x.shape
    n = height * width
    xs = x.reshape(groups, channels // groups, n)
    es = embed.reshape(groups, -1, n)
    child = torch.tensor([c for c, _ in edges])
    parent = torch.tensor([p for _, p in edges])
    length = (es[:, :, child] - es[:, :, parent]).square().sum(1)  # (G, n - 1)
    paths = path_edges(edges, n)
    incidence = torch.zeros(n, n, n - 1, dtype=x.dtype)
    for (a, b), ids in paths.items():
        incidence[a, b, ids] = 1
    s = torch.exp(-torch.einsum("abe,ge->gab", incidence, length))  # (G, n, n), S_ii = 1
    out = torch.einsum("gab,gcb->gca", s, xs) / s.sum(2)[:, None, :]
    return out.reshape(channels, height, width)


def test_spanning_tree_is_minimum_and_breadth_first():
    bench = load_bench()
    torch.manual_seed(0)
    guide = torch.randn(3, 5, 6)
    tree = bench.spanning_tree(guide)
    n = 30
    assert sorted(tree.order.tolist()) == list(range(n)) and tree.order[0] == 2 * 6 + 3  # the centre pixel first
    depth = np.zeros(n, dtype=int)
    for k in range(1, n):
        assert tree.parent[k] < k  # a parent comes before its children
        depth[k] = depth[tree.parent[k]] + 1
    assert tree.starts == np.searchsorted(depth, np.arange(depth.max() + 2)).tolist()
    flat = guide.reshape(3, -1).double()

    def length(u, v):
        return 1 + float((flat[:, u] - flat[:, v]).square().sum())

    edges = tree_edges(tree)
    assert all(abs(u - v) in (1, 6) for u, v in edges)  # grid neighbours
    # Kruskal as the reference: the sorted grid edges taken whenever they join two components
    u, v = bench.grid_edges(5, 6)
    root = list(range(n))

    def find(a):
        while root[a] != a:
            a = root[a]
        return a

    best = 0.0
    for i in sorted(range(len(u)), key=lambda i: length(u[i], v[i])):
        a, b = find(u[i]), find(v[i])
        if a != b:
            root[a] = b
            best += length(u[i], v[i])
    assert sum(length(a, b) for a, b in edges) == pytest.approx(best)


@pytest.mark.parametrize("groups", [1, 2])
def test_two_pass_filter_and_its_gradients_equal_the_dense_filter(groups):
    bench = load_bench()
    torch.manual_seed(groups)
    x = torch.randn(4, 4, 5, dtype=torch.float64, requires_grad=True)
    embed = (0.5 * torch.randn(2 * groups, 4, 5, dtype=torch.float64)).requires_grad_()
    tree = bench.spanning_tree(torch.randn(3, 4, 5))
    got = bench.tree_filter(x, embed, tree, groups)
    expected = dense_tree_filter(x, embed, tree_edges(tree), groups)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    weights = torch.randn_like(got)
    grads = torch.autograd.grad((got * weights).sum(), (x, embed))
    expected_grads = torch.autograd.grad((expected * weights).sum(), (x, embed))
    for a, b in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert not torch.allclose(got, x)  # the filter does mix the pixels


def test_prints_one_row_per_size(capsys):
    bench = load_bench()
    rows = bench.main(bench.get_args_parser().parse_args(
        ["--sizes", "5", "9", "--channels", "8", "--groups", "2", "--embed", "4", "--repeat", "1", "--device", "cpu"]))
    assert [r["nodes"] for r in rows] == [25, 81] and all(r["depth"] >= 4 for r in rows)
    out = capsys.readouterr().out
    assert "MST+BFS" in out and "9x9" in out
