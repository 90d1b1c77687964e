"""What autograd really keeps for the backward pass: the measurement the memory estimate is tested against."""

import torch
import torch.nn as nn


def saved_activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves during ``model(x)``, each storage once, weights and
    per-channel statistics (64 values or fewer) left out, as ``estimate_memory``'s activations count them."""
    parameter_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameter_storages and tensor.numel() > 64:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(x)
    return sum(storages.values())
