"""A pruned model's layer sizes, saved beside its weights so a resumed run can rebuild it.

Pruning changes sizes that the model's constructor chose (``out_channels``, ``groups``,
``num_features``...). Rebuilding the original model, applying the recorded sizes and loading
the weights gives back the pruned model without re-running the pruning.
"""

from __future__ import annotations

from torch import nn

SIZE_ATTRIBUTES = ("in_channels", "out_channels", "groups", "in_features", "out_features", "num_features",
                   "num_channels", "num_groups")


def layer_sizes(model: nn.Module) -> dict[str, dict[str, int]]:
    """{module name: {size attribute: value}} for every module that has size attributes."""
    sizes = {}
    for name, module in model.named_modules():
        found = {a: getattr(module, a) for a in SIZE_ATTRIBUTES if isinstance(getattr(module, a, None), int)}
        if found:
            sizes[name] = found
    return sizes


def resize_like(model: nn.Module, sizes: dict[str, dict[str, int]], state: dict) -> nn.Module:
    """Give ``model`` (built unpruned) the recorded sizes and the pruned weights, in place."""
    modules = dict(model.named_modules())
    for name, attributes in sizes.items():
        for attribute, value in attributes.items():
            setattr(modules[name], attribute, value)
    for key, tensor in state.items():
        owner, _, leaf = key.rpartition(".")
        module = modules[owner]
        if leaf in module._parameters and module._parameters[leaf] is not None:
            module._parameters[leaf] = nn.Parameter(tensor.clone(), requires_grad=module._parameters[leaf].requires_grad)
        elif leaf in module._buffers and module._buffers[leaf] is not None:
            module._buffers[leaf] = tensor.clone()
    model.load_state_dict(state)
    return model
