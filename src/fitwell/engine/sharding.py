"""Model parallel: ``train.strategy: fsdp`` shards the parameters, gradients and optimizer state
of the network over the run's processes with PyTorch's FSDP2 (``torch.distributed.fsdp.fully_shard``).

Each weight layer (linear, embedding, convolution) is its own unit, gathered for its forward and
backward and freed after; the rest is gathered with the root. The batches are the same as under DDP
(each rank its share of every global batch; FSDP's reduce-scatter averages the gradients as DDP's
all-reduce does), so a run on N processes makes the update of one process.

The Trainer trains a sharded *copy*: the module it was given stays an ordinary module, and rank 0
fills it with the full weights at every epoch's end (a collective every rank joins; with no
callbacks to read them, once after the last epoch). Callbacks,
checkpoints and the run's scoring read that module, so a checkpoint is the same file as one
process writes: it resumes on any number of processes, sharded or not.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

WEIGHT_LAYERS = (nn.Linear, nn.Embedding, nn.EmbeddingBag, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def units(model: nn.Module) -> list[nn.Module]:
    """The submodules sharded as units of their own: weight layers whose parameters only their own
    forward reads (not those inside attention, which reads its output projection's weight itself)."""
    inside = {id(m) for attention in model.modules() if isinstance(attention, nn.MultiheadAttention)
              for m in attention.modules()}
    return [m for m in model.modules() if m is not model and isinstance(m, WEIGHT_LAYERS)
            and id(m) not in inside]


def shard(model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device,
          precision: str = "32-true") -> nn.Module:
    """A copy of ``model`` on ``device``, sharded over every process of the default group;
    ``optimizer``'s groups are pointed at the copy's parameters (before any step: no state to move)."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    names = {id(p): name for name, p in model.named_parameters()}
    sharded = copy.deepcopy(model).to(device)
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    policy = MixedPrecisionPolicy()
    if precision == "bf16-mixed":  # bf16 compute, fp32 master weights and gradient reduction
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for unit in units(sharded):
        fully_shard(unit, mesh=mesh, mp_policy=policy)
    fully_shard(sharded, mesh=mesh, mp_policy=policy)
    params = dict(sharded.named_parameters())
    for group in optimizer.param_groups:
        group["params"] = [params[names[id(p)]] for p in group["params"]]
    return sharded


def gather(sharded: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """The full weights and optimizer state, on the CPU of rank 0 (other ranks get empty dicts);
    the optimizer's in ``optimizer.state_dict()``'s own layout (parameters numbered in group
    order), which a single process loads as it is. Every rank must call it."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(sharded, options=options)
    state = get_optimizer_state_dict(sharded, optimizer, options=options)
    if not state:
        return weights, {}
    index: dict[str, int] = {}
    groups = [{**group, "params": [index.setdefault(name, len(index)) for name in group["params"]]}
              for group in state["param_groups"]]
    return weights, {"state": {index[name]: value for name, value in state["state"].items()},
                     "param_groups": groups}


def restore(sharded: nn.Module, optimizer: torch.optim.Optimizer, weights: dict, state: dict) -> None:
    """Load a full checkpoint's weights and optimizer state (the single-process layout, which every
    rank read) into the sharded copy and its optimizer: each rank keeps its shard."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(sharded, weights, options=options)
    own = {id(p): name for name, p in sharded.named_parameters()}
    names = [own[id(p)] for group in optimizer.param_groups for p in group["params"]]
    named = {"state": {names[int(i)]: value for i, value in state["state"].items()},
             "param_groups": [{**group, "params": [names[int(i)] for i in group["params"]]}
                              for group in state["param_groups"]]}
    set_optimizer_state_dict(sharded, optimizer, named, options=options)
