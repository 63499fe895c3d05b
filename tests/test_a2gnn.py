import pytest
import torch
import torch.nn.functional as F

from network.a2gnn import A2GNN, AffinityAttention, relu_dropout
from network.graph import GraphBatch
from tool.graph import window_graph


def dense_layer(x, beta, weights, edges):
    """algorithm.md §3.3 written densely, as published: N×N cosine, -1e9 masks, softmax, P @ x."""
    norm = torch.norm(x, 2, 1).view(-1, 1)
    cos = torch.div(x @ x.t(), norm @ norm.t() + 1e-7)
    mask = torch.zeros_like(cos)
    mask[~edges] = -1e9
    mask[cos < 0] = -1e9
    return F.softmax(beta * cos + mask + 10 * weights, dim=1) @ x


def dense_model(model, x, weights, edges, k=0):
    """Image ``k``'s A2GNN of ``model`` written densely on its own graph."""
    z = F.relu(x @ model.embeddinglayer.weight[k])
    for layer in model.attentionlayers:
        z = dense_layer(z, layer.beta[k], weights, edges)
    return z @ model.outputlayer.weight[k], z


def random_graph(h, w, radius, seed):
    g = torch.Generator().manual_seed(seed)
    aff = torch.rand(2 * radius + 1, 2 * radius + 1, h, w, generator=g, dtype=torch.float64)
    return window_graph(aff, radius)


@pytest.mark.parametrize("h,w,radius", [(4, 5, 1), (7, 6, 2), (9, 12, 4), (3, 2, 3)])
def test_layer_forward_and_gradients_equal_dense(h, w, radius):
    graph = random_graph(h, w, radius, seed=radius)
    weights, edges = graph.to_dense()
    torch.manual_seed(0)
    layer = AffinityAttention().double()
    x = torch.randn(h * w, 6, dtype=torch.float64)  # signed: some cos < 0 are masked
    x[1] = 0  # a zero embedding (zero norm: cos 0, the norm's gradient is 0)
    x.requires_grad_()
    out = layer(x, graph.tiles)
    target = torch.randn_like(out)
    (out * target).sum().backward()
    grad_x, grad_beta = x.grad.clone(), layer.beta.grad.clone()

    x.grad, layer.beta.grad = None, None
    ref = dense_layer(x, layer.beta, weights, edges)
    (ref * target).sum().backward()
    assert (x @ x.t() < 0).any()
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(grad_x, x.grad, rtol=0, atol=1e-5)
    torch.testing.assert_close(grad_beta, layer.beta.grad, rtol=0, atol=1e-5)


@pytest.mark.parametrize("h,w,radius,tile", [(6, 7, 2, 3), (10, 9, 4, 7), (5, 13, 3, 4)])
def test_model_forward_and_gradients_equal_dense(h, w, radius, tile):
    graph = random_graph(h, w, radius, seed=10 + radius)
    graph.tiles = graph.tiled(tile)  # any tiling holds the same graph
    weights, edges = graph.to_dense()
    torch.manual_seed(1)
    model = A2GNN(nfeat=12, nhid=8, nclass=5, nlayers=3, dropout_rate=0.5).double().eval()
    x = torch.rand(h * w, 12, dtype=torch.float64)
    logits, emb = model(x, graph)
    target = torch.randn_like(logits)
    ((logits * target).sum() + emb.pow(2).sum()).backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}

    model.zero_grad()
    ref_logits, ref_emb = dense_model(model, x, weights, edges)
    ((ref_logits * target).sum() + ref_emb.pow(2).sum()).backward()
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(emb, ref_emb, rtol=0, atol=1e-5)
    for k, p in model.named_parameters():
        torch.testing.assert_close(grads[k], p.grad, rtol=0, atol=1e-5, msg=k)


@pytest.mark.parametrize("images", [1, 3])
def test_parameter_names_and_shapes(images):
    model = A2GNN(nfeat=40, nhid=16, nclass=21, nlayers=3, dropout_rate=0.5, generators=[None] * images)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {
        "embeddinglayer.weight": (images, 40, 16),
        "attentionlayers.0.beta": (images,),
        "attentionlayers.1.beta": (images,),
        "attentionlayers.2.beta": (images,),
        "outputlayer.weight": (images, 16, 21),
    }
    assert all(((layer.beta >= 0) & (layer.beta <= 1)).all() for layer in model.attentionlayers)
    bound = (6 / (40 + 16)) ** 0.5  # Xavier uniform
    assert model.embeddinglayer.weight.abs().max() <= bound < 1.05 * model.embeddinglayer.weight.abs().max()


def test_batched_images_of_different_sizes_equal_dense_per_image():
    """Three disjoint graphs (different sizes) in one GraphBatch: each image's logits, embedding and
    parameter gradients equal the dense formulation of its own A2GNN on its own graph."""
    graphs = [random_graph(6, 7, 2, seed=1), random_graph(4, 9, 2, seed=2), random_graph(6, 7, 2, seed=3)]
    batch = GraphBatch(graphs)
    gens = [torch.Generator().manual_seed(k) for k in range(3)]
    model = A2GNN(nfeat=5, nhid=8, nclass=4, nlayers=3, dropout_rate=0.5, generators=gens).double().eval()
    x = torch.rand(batch.num_nodes, 5, dtype=torch.float64) - 0.2  # signed embeddings: some cos < 0
    logits, emb = model(x, batch)
    target = torch.randn_like(logits)
    ((logits * target).sum() + emb.pow(2).sum()).backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    offsets = batch.offsets
    for k, graph in enumerate(graphs):
        part = slice(offsets[k], offsets[k + 1])
        weights, edges = graph.to_dense()
        ref_logits, ref_emb = dense_model(model, x[part], weights, edges, k)
        ((ref_logits * target[part]).sum() + ref_emb.pow(2).sum()).backward()
        torch.testing.assert_close(logits[part], ref_logits, rtol=0, atol=1e-10)
        torch.testing.assert_close(emb[part], ref_emb, rtol=0, atol=1e-10)
    for k, p in model.named_parameters():  # image k's slice got only image k's gradient
        torch.testing.assert_close(grads[k], p.grad, rtol=0, atol=1e-10, msg=k)


def test_image_parameters_and_dropout_come_from_the_image_generator():
    """An image's initial parameters and dropout masks depend on its own generator only."""
    graphs = [random_graph(5, 6, 1, seed=4), random_graph(3, 4, 1, seed=5)]
    x = torch.rand(30 + 12, 7, dtype=torch.float64)

    def run(seeds, parts):
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        model = A2GNN(nfeat=7, nhid=6, nclass=3, nlayers=2, dropout_rate=0.5, generators=gens).double().train()
        batch = GraphBatch([graphs[i] for i in parts])
        feats = torch.cat([x[:30] if i == 0 else x[30:] for i in parts])
        return model(feats, batch)[0], model

    alone, model_alone = run([11], [0])
    both, model_both = run([11, 12], [0, 1])
    torch.testing.assert_close(both[:30], alone, rtol=0, atol=1e-12)
    assert torch.equal(model_both.embeddinglayer.weight[0], model_alone.embeddinglayer.weight[0])
    other, _ = run([13], [0])
    assert not torch.allclose(other, alone)


def test_dropout_only_in_training():
    graph = random_graph(5, 6, 2, seed=3)
    torch.manual_seed(2)
    model = A2GNN(nfeat=10, nhid=32, nclass=4, nlayers=3, dropout_rate=0.5).double()
    x = torch.rand(30, 10, dtype=torch.float64)
    model.eval()
    a, _ = model(x, graph)
    b, _ = model(x, graph)
    assert torch.equal(a, b)
    model.train()
    c, _ = model(x, graph)
    assert not torch.allclose(a, c)


def test_relu_dropout_keeps_scaled_positive_entries():
    torch.manual_seed(4)
    x = torch.randn(400, 50, dtype=torch.float64, requires_grad=True)
    out = relu_dropout(x, 0.5)
    kept = out != 0
    assert torch.equal(out[kept], 2 * x[kept])  # kept entries: relu(x) / (1 − rate)
    assert (x[kept] > 0).all()
    assert abs(kept.sum().item() / (x > 0).sum().item() - 0.5) < 0.02
    out.sum().backward()
    torch.testing.assert_close(x.grad, 2.0 * kept.double())
    assert torch.equal(relu_dropout(x, 0.0), F.relu(x))


def test_amp_runs_the_embedding_product_in_bfloat16():
    graph = random_graph(6, 7, 2, seed=6)
    graph = window_graph(graph.weight.t().reshape(5, 5, 6, 7).float(), 2)
    x = torch.rand(42, 300)
    gens = [torch.Generator().manual_seed(0)]
    full = A2GNN(300, 32, 4, 3, 0.0, generators=gens).eval()
    gens = [torch.Generator().manual_seed(0)]
    amp = A2GNN(300, 32, 4, 3, 0.0, generators=gens, amp=True).eval()
    a, b = full(x, graph)[0], amp(x, graph)[0]
    assert b.dtype == torch.float32 and amp.embeddinglayer.weight.dtype == torch.float32
    assert 0 < (a - b).abs().max() < 0.02 * a.abs().max()  # bf16 rounding, not an exact product
