"""MTCNN as a zoo model: three networks (one engine each) behind one command, `python -m zoo.mtcnn`.

`MTCNNModel` is the ZooModel of each network: its configuration is {"variant": "pnet" | "rnet" | "onet"}, so the
shared `define_network` builds any of the three. The cascade that joins them is cascade.py; the commands are cli.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from wts.weight_map import WeightMap
from zoo.engine.model import ZooModel, load_state_into

from .nets import CROP_SIZE, DEFINE, MODULES

# the first key of each network that the other two lack: a file of another stage is named as such
SIGNATURE = {"pnet": "conv4_1.weight", "rnet": "dense5_1.weight", "onet": "dense6_3.weight"}


class MTCNNModel(ZooModel):
    name = "mtcnn"
    summary = ("MTCNN face detector (facenet-pytorch's trained P-Net, R-Net, O-Net): an image pyramid and a "
               "three-stage cascade, face boxes and five landmarks")

    def config_from_weights(self, weights: WeightMap, args=None, stage: str | None = None) -> dict:
        """{"variant": the network these weights are for}; with `stage`, checked to be that one."""
        found = [s for s, key in SIGNATURE.items() if key in weights]
        if stage is None:
            if len(found) != 1:
                raise ValueError(f"{weights.source}: not the weights of an MTCNN network (expected one of "
                                 f"{sorted(SIGNATURE.values())} among its keys)")
            stage = found[0]
        elif found != [stage]:
            what = f"the {found[0]} weights" if len(found) == 1 else "not MTCNN weights"
            raise ValueError(f"{weights.source}: {what}, but {stage} weights were expected (key "
                             f"{SIGNATURE[stage]!r} is missing)")
        return {"variant": stage}

    def reference_module(self, config: dict) -> torch.nn.Module:
        return MODULES[config["variant"]]()

    def random_module(self, args, seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return MODULES["pnet"]().eval()  # the shared commands' random weights; MTCNN's own use trained ones

    def input_shape(self, config: dict) -> tuple[int, ...]:
        stage = config["variant"]
        return (3, -1, -1) if stage == "pnet" else (3, CROP_SIZE[stage], CROP_SIZE[stage])

    def sample_input(self, config: dict, batch: int, seed: int = 0):
        """P-Net's height and width are dynamic: samples are the 48 px of O-Net's crops (any size >= 12 works)."""
        shape = tuple(48 if d < 0 else d for d in self.input_shape(config))
        return np.random.default_rng(seed).random((batch, *shape), dtype=np.float32)

    def define(self, net, weights: WeightMap, config: dict, x) -> list:
        return DEFINE[config["variant"]](net, weights, x)


def weight_file(folder: Path | None, stage: str) -> Path:
    """`<folder>/<stage>.pt` (or .pth, .wts), or facenet-pytorch's installed file when no folder is given."""
    if folder is None:
        from zoo.assets import asset_path
        return asset_path(f"mtcnn_{stage}")
    if not folder.is_dir():
        raise FileNotFoundError(f"--weights-dir {folder}: no such folder")
    for suffix in (".pt", ".pth", ".wts"):
        if (folder / f"{stage}{suffix}").is_file():
            return folder / f"{stage}{suffix}"
    raise FileNotFoundError(f"--weights-dir {folder}: no {stage}.pt (nor .pth, .wts) in it; the folder needs "
                            f"pnet.pt, rnet.pt and onet.pt (facenet-pytorch's files)")


def load_stage_weights(model: MTCNNModel, folder: Path | None, stage: str) -> tuple[WeightMap, dict]:
    """The weights of one network, checked to be that network's: (weights, config)."""
    from zoo.engine.checkpoint import load_state_dict
    path = weight_file(folder, stage)
    try:
        weights = WeightMap(load_state_dict(path).tensors, str(path))
    except ValueError as e:  # CheckpointError, WtsError: already one line naming the file
        raise ValueError(str(e) if str(path) in str(e) else f"{path}: {e}") from None
    return weights, model.config_from_weights(weights, stage=stage)


def reference_network(model: MTCNNModel, weights: WeightMap, config: dict) -> torch.nn.Module:
    """The PyTorch module of one network with these weights (every key and shape checked)."""
    return load_state_into(model.reference_module(config), WeightMap(weights.arrays(), weights.source))

