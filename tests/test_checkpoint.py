"""Checkpoint loading/saving and the numpy MXNet .params reader (algorithm.md §0)."""

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from network import resnet38_SEAM, resnet38d
from tool import checkpoint

W = 1 / 16


def write_mxnet_params(path: Path, arrays: dict[str, np.ndarray], legacy_every: int = 2) -> None:
    """Write an MXNet NDArray list file: 0x112 header, reserved word, arrays, then names.

    Every ``legacy_every``-th array uses the legacy layout (ndim as the first word, uint32 dims); the others
    use the V2 layout (magic 0xF993fac9, storage type 0, int32 ndim, int64 dims). Context cpu(0), float32.
    """
    out = [struct.pack("<QQ", 0x112, 0), struct.pack("<Q", len(arrays))]
    for i, array in enumerate(arrays.values()):
        array = np.ascontiguousarray(array, dtype="<f4")
        if i % legacy_every == 0:
            out.append(struct.pack(f"<I{array.ndim}I", array.ndim, *array.shape))
        else:
            out.append(struct.pack(f"<Iii{array.ndim}q", 0xF993FAC9, 0, array.ndim, *array.shape))
        out.append(struct.pack("<iii", 1, 0, 0))  # cpu, device 0, float32
        out.append(array.tobytes())
    out.append(struct.pack("<Q", len(arrays)))
    for name in arrays:
        out.append(struct.pack("<Q", len(name)) + name.encode())
    path.write_bytes(b"".join(out))


def mxnet_name(key: str) -> str:
    """Our backbone key -> its MXNet name with the arg:/aux: prefix (inverse of algorithm.md §0.1 rules)."""
    module, *rest = key.split(".")
    suffix = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_var"}
    if module == "conv1a":
        return "arg:conv1a_weight"
    if module == "bn7":
        name = "bn7_" + suffix[rest[0]]
    else:
        layer, param = rest
        stage, _, sub = module[1:].partition("_")
        block = f"{stage}a" if not sub else f"{stage}b{sub}"
        kind, branch = layer.split("_", 1)
        if kind == "conv":
            name = f"res{block}_{branch}_weight"
        else:
            name = f"bn{block}_{branch}_{suffix[param]}"
    return ("aux:" if "moving" in name else "arg:") + name


def backbone_mxnet_arrays(net):
    arrays = {mxnet_name(k): v.numpy() for k, v in net.state_dict().items()
              if not k.endswith("num_batches_tracked")}
    arrays["arg:linear1000_weight"] = np.ones((1000, 4), np.float32)
    arrays["arg:linear1000_bias"] = np.ones(1000, np.float32)
    return arrays


def test_mxnet_reader_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"arg:res4b3_branch2a_weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
              "aux:bn7_moving_var": rng.random(5).astype(np.float32),
              "arg:conv1a_weight": rng.standard_normal((2, 3, 3, 3)).astype(np.float32)}
    write_mxnet_params(tmp_path / "x.params", arrays)
    read = checkpoint.read_mxnet_params(tmp_path / "x.params")
    assert list(read) == ["res4b3_branch2a_weight", "bn7_moving_var", "conv1a_weight"]
    for name, array in arrays.items():
        np.testing.assert_array_equal(read[name.split(":")[1]], array)


def test_mxnet_name_mapping():
    names = ["res4b3_branch2a_weight", "bn2a_branch1_gamma", "bn6a_branch2b2_beta",
             "bn5b2_branch2b1_moving_mean", "bn7_moving_var", "conv1a_weight", "linear1000_weight",
             "linear1000_bias", "res7a_branch1_weight", "something_else"]
    mapped = checkpoint.mxnet_to_resnet38({n: np.zeros(1) for n in names})
    assert sorted(mapped) == sorted(["b4_3.conv_branch2a.weight", "b2.bn_branch1.weight",
                                     "b6.bn_branch2b2.bias", "b5_2.bn_branch2b1.running_mean",
                                     "bn7.running_var", "conv1a.weight", "b7.conv_branch1.weight",
                                     "something_else"])


def test_mxnet_file_loads_strictly_into_backbone(tmp_path, capsys):
    torch.manual_seed(0)
    source = resnet38d.Net(width=W)
    with torch.no_grad():
        for bn in (m for m in source.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_var.uniform_(0.5, 2)
    write_mxnet_params(tmp_path / "ilsvrc.params", backbone_mxnet_arrays(source))
    target = resnet38d.Net(width=W)
    report = checkpoint.load_checkpoint(target, tmp_path / "ilsvrc.params")
    assert not report.missing and not report.unexpected
    for k, v in source.state_dict().items():
        assert torch.equal(v, target.state_dict()[k]), k
    # into SEAM: a subset load, the four head convs stay as they are
    seam = resnet38_SEAM.Net(width=W)
    report = checkpoint.load_checkpoint(seam, tmp_path / "ilsvrc.params", strict=False)
    assert sorted(report.missing) == ["f8_3.weight", "f8_4.weight", "f9.weight", "fc8.weight"]
    assert "missing 4, unexpected 0" in capsys.readouterr().out


def test_bad_mxnet_files(tmp_path):
    (tmp_path / "bad.params").write_bytes(struct.pack("<QQ", 0x113, 0))
    with pytest.raises(ValueError, match="bad magic"):
        checkpoint.read_mxnet_params(tmp_path / "bad.params")
    write_mxnet_params(tmp_path / "cut.params", {"arg:conv1a_weight": np.zeros((2, 3, 3, 3), np.float32)})
    (tmp_path / "cut.params").write_bytes((tmp_path / "cut.params").read_bytes()[:60])
    with pytest.raises(ValueError, match="truncated"):
        checkpoint.read_mxnet_params(tmp_path / "cut.params")


def test_save_strips_module_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    net = resnet38_SEAM.Net(width=W)
    checkpoint.save_checkpoint(torch.nn.DataParallel(net), tmp_path / "seam.pth")
    assert [p.name for p in tmp_path.iterdir()] == ["seam.pth"]  # no temp file left
    saved = torch.load(tmp_path / "seam.pth", weights_only=True)
    assert not any(k.startswith("module.") for k in saved) and set(saved) == set(net.state_dict())
    # a DataParallel-style file (module. prefix) loads strictly
    torch.save({"module." + k: v for k, v in net.state_dict().items()}, tmp_path / "dp.pth")
    torch.manual_seed(1)
    other = resnet38_SEAM.Net(width=W)
    report = checkpoint.load_checkpoint(other, tmp_path / "dp.pth")
    assert len(report.matched) == len(net.state_dict()) and not report.missing and not report.unexpected
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in net.state_dict().items())


def test_strict_load_failures_name_the_keys(tmp_path):
    checkpoint.save_checkpoint(resnet38d.Net(width=W), tmp_path / "backbone.pth")
    with pytest.raises(ValueError, match=r"backbone\.pth does not match .*4 missing keys.*fc8\.weight"):
        checkpoint.load_checkpoint(resnet38_SEAM.Net(width=W), tmp_path / "backbone.pth")
    state = resnet38d.Net(width=W).state_dict()
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"1 unexpected keys \[extra\.weight\]"):
        checkpoint.load_checkpoint(resnet38d.Net(width=W), tmp_path / "extra.pth")
    with pytest.raises(ValueError, match="do not fit"):
        checkpoint.load_checkpoint(resnet38d.Net(width=1 / 8), tmp_path / "backbone.pth", strict=False)


def test_subset_load_counts_and_refusal(tmp_path, capsys):
    torch.manual_seed(0)
    checkpoint.save_checkpoint(resnet38d.Net(width=W), tmp_path / "backbone.pth")
    seam = resnet38_SEAM.Net(width=W)
    head_before = seam.fc8.weight.clone()
    report = checkpoint.load_checkpoint(seam, tmp_path / "backbone.pth", strict=False)
    n_backbone = len(resnet38d.Net(width=W).state_dict())
    assert len(report.matched) == n_backbone and len(report.missing) == 4 and not report.unexpected
    assert f"matched {n_backbone}, missing 4, unexpected 0" in capsys.readouterr().out
    assert torch.equal(seam.fc8.weight, head_before)
    # a file that fills only head layers: no backbone key matched -> refused
    head = {"fc8.weight": seam.fc8.weight.detach(), "other.weight": torch.zeros(2)}
    torch.save(head, tmp_path / "head.pth")
    with pytest.raises(ValueError, match="none of its 2 keys matches a backbone key"):
        checkpoint.load_checkpoint(seam, tmp_path / "head.pth", strict=False)


class NotATensor:
    pass


def test_refuses_pickles_and_non_state_dicts(tmp_path):
    torch.save({"a": NotATensor()}, tmp_path / "obj.pth")
    with pytest.raises(ValueError, match="obj.pth: holds Python objects other than tensors") as err:
        checkpoint.load_checkpoint(resnet38d.Net(width=W), tmp_path / "obj.pth")
    assert "weights_only" not in str(err.value)  # never advise unpickling
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="expected a state dict"):
        checkpoint.load_checkpoint(resnet38d.Net(width=W), tmp_path / "list.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        checkpoint.load_checkpoint(resnet38d.Net(width=W), tmp_path / "missing.pth")


def test_seam_classifier_initialises_affinity_net(tmp_path, capsys):
    from network import resnet38_aff_gated

    torch.manual_seed(0)
    seam = resnet38_SEAM.Net(width=W)
    checkpoint.save_checkpoint(seam, tmp_path / "seam.pth")
    aff = resnet38_aff_gated.Net(width=W)
    f9_before = aff.f9.weight.clone()
    report = checkpoint.load_checkpoint(aff, tmp_path / "seam.pth", strict=False)
    # f8_3 / f8_4 share name and shape and load; f9 (195->192 vs 448->448) keeps its init, and says so
    assert report.reshaped == ["f9.weight"]
    assert torch.equal(aff.f8_3.weight, seam.f8_3.weight) and torch.equal(aff.b7.conv_branch1.weight,
                                                                            seam.b7.conv_branch1.weight)
    assert torch.equal(aff.f9.weight, f9_before)
    assert "left as initialised 1 [f9.weight]" in capsys.readouterr().out
    with pytest.raises(ValueError, match="do not fit"):
        checkpoint.load_checkpoint(aff, tmp_path / "seam.pth", strict=True)


@pytest.mark.parametrize("kind", ["random", "truncated", "empty"])
def test_corrupt_or_foreign_checkpoint_is_named_without_unpickling_advice(tmp_path, kind):
    good = tmp_path / "good.pth"
    torch.save({"w": torch.arange(5000.0)}, good)
    data = good.read_bytes()
    bad = tmp_path / f"{kind}.pth"
    bad.write_bytes({"random": np.random.default_rng(0).bytes(2000), "truncated": data[:len(data) // 2],
                     "empty": b""}[kind])
    for load in (checkpoint.read_state_dict, checkpoint.load_torch_file):
        with pytest.raises(ValueError, match=f"{kind}.pth: not a PyTorch checkpoint, or a truncated file") as err:
            load(bad)
        assert "weights_only" not in str(err.value)


def test_an_already_read_state_is_loaded_strictly_under_its_path_name(tmp_path):
    torch.manual_seed(0)
    source, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    state = {k: v.clone() for k, v in source.state_dict().items()}
    checkpoint.load_checkpoint(target, tmp_path / "never_read.pth", state=state)  # the file is not opened
    assert all(torch.equal(target.state_dict()[k], v) for k, v in state.items())
    with pytest.raises(ValueError, match=r"never_read\.pth does not match .*1 missing keys.*bias"):
        checkpoint.load_checkpoint(target, tmp_path / "never_read.pth", state={"weight": state["weight"]})
