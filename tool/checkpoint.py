"""Loading and saving network weights: PyTorch state dicts and the MXNet ImageNet ``.params`` file (algorithm.md §0).

Loading is strict by default (every key present, nothing extra, same shapes). ``strict=False`` is for a
subset load such as backbone-only initialization: it prints matched / missing / unexpected counts and
refuses a file that fills none of the model's backbone keys. Files are never unpickled beyond tensors
(``weights_only=True``).
"""

from __future__ import annotations

import os
import pickle
import re
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from network.resnet38d import BACKBONE_MODULES
from tool.cli import WrongFileError
from tool.label_io import atomic_path
from tool.weights import missing_weights

MXNET_LIST_MAGIC = 0x112
NDARRAY_V1_MAGIC = 0xF993FAC8  # int64 shape
NDARRAY_V2_MAGIC = 0xF993FAC9  # + storage type
NDARRAY_V3_MAGIC = 0xF993FACA  # numpy shape semantics
MXNET_DTYPES = {0: np.float32, 1: np.float64, 2: np.float16, 3: np.uint8, 4: np.int32, 5: np.int8,
                6: np.int64}

# what a weights flag accepts, said by every "wrong kind of file" message
_WANTED = "pass a .pth state dict written by this project's scripts or the MXNet ImageNet .params file"
_BN_SUFFIX = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_var": "running_var"}
_BLOCK_KEY = re.compile(r"^(res|bn)(\d)(a|b\d+)_(branch\w+?)_(weight|gamma|beta|moving_mean|moving_var)$")
_BN7_KEY = re.compile(r"^bn7_(gamma|beta|moving_mean|moving_var)$")


@dataclass
class LoadReport:
    """What a load did: keys filled from the file, model keys left as they were, file keys ignored."""

    path: str
    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    reshaped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"{self.path}: matched {len(self.matched)}, missing {len(self.missing)}, "
                f"unexpected {len(self.unexpected)}")
        return text + (f", head tensors of another shape left as initialised {len(self.reshaped)} "
                       f"[{_listing(self.reshaped, 4)}]" if self.reshaped else "")


def strip_module_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` prefix that DataParallel / DistributedDataParallel add to every key."""
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


class _Reader:
    """Little-endian cursor over the bytes of an MXNet file."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def take(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise WrongFileError(f"{self.path}: truncated MXNet .params file (wanted {size} bytes at {self.pos})")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def scalar(self, fmt: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]

    def ints(self, fmt: str, count: int) -> list[int]:
        return list(struct.unpack(f"<{count}{fmt}", self.take(count * struct.calcsize(fmt))))

    def ndarray(self) -> np.ndarray:
        magic = self.scalar("I")
        if magic in (NDARRAY_V2_MAGIC, NDARRAY_V3_MAGIC):
            storage = self.scalar("i")
            if storage != 0:
                raise WrongFileError(f"{self.path}: sparse NDArray (storage type {storage}) is not supported")
            shape = self.ints("q", self.scalar("i"))
        elif magic == NDARRAY_V1_MAGIC:
            shape = self.ints("q", self.scalar("I"))
        else:  # legacy layout: the magic word is the number of dimensions, dims are uint32
            shape = self.ints("I", magic)
        if len(shape) == 0:
            return np.zeros((0,), dtype=np.float32)
        self.take(8)  # context: device type, device id (int32 each)
        type_flag = self.scalar("i")
        if type_flag not in MXNET_DTYPES:
            raise WrongFileError(f"{self.path}: unknown MXNet dtype flag {type_flag}")
        dtype = np.dtype(MXNET_DTYPES[type_flag]).newbyteorder("<")
        count = int(np.prod(shape))
        return np.frombuffer(self.take(count * dtype.itemsize), dtype=dtype).reshape(shape).copy()


def read_mxnet_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an MXNet NDArray list file (``.params``) with numpy only.

    Returns the arrays under their stored names with the ``arg:`` / ``aux:`` prefix removed, e.g.
    ``res4b3_branch2a_weight`` ``(512, 512, 3, 3)`` float32 or ``bn7_moving_var`` ``(4096,)``.
    """
    path = Path(path)
    if not path.is_file():
        raise missing_weights(path)
    reader = _Reader(path.read_bytes(), path)
    if reader.scalar("Q") != MXNET_LIST_MAGIC:
        raise WrongFileError(f"{path}: not an MXNet NDArray list file (bad magic number)")
    reader.take(8)  # reserved
    arrays = [reader.ndarray() for _ in range(reader.scalar("Q"))]
    names = [reader.take(reader.scalar("Q")).decode("utf-8") for _ in range(reader.scalar("Q"))]
    if len(names) != len(arrays):
        raise WrongFileError(f"{path}: {len(arrays)} arrays but {len(names)} names; expected one name per array")
    return {re.sub(r"^(arg|aux):", "", name): array for name, array in zip(names, arrays, strict=True)}


def mxnet_to_resnet38(params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rename MXNet ResNet-38 arrays to ``network.resnet38d`` keys (algorithm.md §0.1).

    ``res4b3_branch2a_weight`` → ``b4_3.conv_branch2a.weight``; ``bn2a_branch2b1_gamma`` →
    ``b2.bn_branch2b1.weight`` (beta → bias, moving_mean/var → running_mean/var); ``bn7_*`` → ``bn7.*``;
    ``conv1a_weight`` → ``conv1a.weight``; ``linear1000_*`` (the ImageNet classifier) is dropped. Other
    names are kept unchanged, so a load reports them as unexpected.
    """
    out = {}
    for name, array in params.items():
        block, bn7 = _BLOCK_KEY.match(name), _BN7_KEY.match(name)
        if name.startswith("linear1000_"):
            continue
        if name == "conv1a_weight":
            key = "conv1a.weight"
        elif bn7:
            key = f"bn7.{_BN_SUFFIX[bn7.group(1)]}"
        elif block:
            kind, stage, sub, branch, suffix = block.groups()
            module = f"b{stage}" if sub == "a" else f"b{stage}_{sub[1:]}"
            key = f"{module}.{'conv' if kind == 'res' else 'bn'}_{branch}.{_BN_SUFFIX.get(suffix, suffix)}"
        else:
            key = name
        out[key] = array
    return out


def load_torch_file(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """``torch.load(path, weights_only=True)`` whose errors name the file and never advise unpickling.

    A missing file raises ``FileNotFoundError``; a random, foreign, empty or truncated file, or a pickle
    holding Python objects beyond tensors and plain containers, raises ``ValueError`` naming ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise missing_weights(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err) or "Unsupported class" in str(err):  # objects (random: opcodes)
            raise WrongFileError(f"{path}: holds Python objects other than tensors, so it is not loaded "
                                 "(unpickling them would run code from the file); save a state dict of "
                                 "tensors instead") from None
        raise WrongFileError(f"{path}: not a PyTorch checkpoint, or a truncated file; {_WANTED}") from None
    except (RuntimeError, EOFError, IndexError, KeyError, ValueError, AttributeError, TypeError,
            UnicodeDecodeError, zipfile.BadZipFile, OSError) as err:
        raise WrongFileError(f"{path}: not a PyTorch checkpoint, or a truncated file "
                             f"({type(err).__name__}); {_WANTED}") from None


def read_state_dict(path: str | os.PathLike,
                    map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file under our key names (``module.`` stripped).

    ``*.params`` is read as the MXNet ImageNet file and renamed (``mxnet_to_resnet38``); anything else is
    a ``torch.save``-d state dict loaded with ``weights_only=True``.
    """
    path = Path(path)
    if not path.is_file():
        raise missing_weights(path)
    if path.suffix == ".params":
        converted = mxnet_to_resnet38(read_mxnet_params(path))
        return {k: torch.from_numpy(v).to(map_location) for k, v in converted.items()}
    state = load_torch_file(path, map_location)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WrongFileError(f"{path}: expected a state dict (parameter name -> tensor), "
                             f"got {type(state).__name__}")
    return strip_module_prefix(state)


def _is_backbone_key(key: str) -> bool:
    return key.split(".", 1)[0] in BACKBONE_MODULES


def _listing(keys: list[str], limit: int = 8) -> str:
    more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_checkpoint(model: nn.Module, path: str | os.PathLike, strict: bool = True,
                    map_location: str | torch.device = "cpu",
                    state: Mapping[str, torch.Tensor] | None = None) -> LoadReport:
    """Load weights from ``path`` (``.pth`` state dict or MXNet ``.params``) into ``model``; ``state``: the
    file already read by ``read_state_dict`` (``path`` then only names it in messages).

    A DataParallel / DistributedDataParallel wrapper is unwrapped.

    ``strict=True``: every model key must be in the file, no file key may be unused, shapes must agree,
    else ``ValueError`` naming the file and the keys. ``strict=False``: load the keys the model has,
    print the counts, and refuse (``ValueError``) a file that matches no backbone key of the model (or no
    key at all for a model without a ResNet-38 backbone); a head tensor (outside the backbone) whose shape
    differs is left as initialised and listed (a SEAM classifier's ``f9`` when it initialises the affinity
    net); a backbone shape mismatch fails (wrong ``--backbone_width``). BatchNorm
    ``num_batches_tracked`` counters are bookkeeping and may be absent from the file.
    """
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    if state is None:
        state = read_state_dict(path, map_location)
    model_state = model.state_dict()
    report = LoadReport(str(path))
    report.matched = [k for k in model_state if k in state]
    report.missing = [k for k in model_state if k not in state and not k.endswith("num_batches_tracked")]
    report.unexpected = [k for k in state if k not in model_state]
    name = type(model).__module__ + "." + type(model).__name__
    if not strict:
        report.reshaped = [k for k in report.matched
                           if not _is_backbone_key(k) and state[k].shape != model_state[k].shape]
        report.matched = [k for k in report.matched if k not in report.reshaped]
    bad_shapes = [f"{k} file {tuple(state[k].shape)} vs model {tuple(model_state[k].shape)}"
                  for k in report.matched if state[k].shape != model_state[k].shape]
    if bad_shapes:
        raise WrongFileError(f"{path}: {len(bad_shapes)} tensors do not fit {name} (wrong file or --backbone_width?): "
                             + _listing(bad_shapes, 4))
    if strict and (report.missing or report.unexpected):
        raise WrongFileError(f"{path} does not match {name} (strict load): {len(report.missing)} missing keys "
                             f"[{_listing(report.missing)}]; {len(report.unexpected)} unexpected keys "
                             f"[{_listing(report.unexpected)}]; pass the checkpoint this stage's training "
                             "script wrote for this network")
    if not strict:
        backbone = [k for k in model_state if _is_backbone_key(k)]
        needed = [k for k in report.matched if _is_backbone_key(k)] if backbone else report.matched
        if not needed:
            raise WrongFileError(f"{path}: none of its {len(state)} keys matches a "
                                 f"{'backbone ' if backbone else ''}key of {name}; refusing to run with random "
                                 f"weights (file keys start with: {_listing(list(state), 4)})")
    model.load_state_dict({k: state[k] for k in report.matched}, strict=False)
    print(f"loaded {report.summary()} into {name}")
    return report


def save_checkpoint(state_or_model: nn.Module | Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Write a state dict (or a module's) atomically with ``torch.save``; keys carry no ``module.`` prefix."""
    state = state_or_model.state_dict() if isinstance(state_or_model, nn.Module) else state_or_model
    state = {k: v.detach().cpu() for k, v in strip_module_prefix(state).items()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
