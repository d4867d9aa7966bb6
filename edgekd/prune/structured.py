"""Structured (channel) pruning on torch-pruning's dependency graph, searched to a size goal.

torch-pruning traces the model and groups every parameter that must lose the same channels
(a conv's filters, its BatchNorm, the next layers' inputs, residual partners, concatenation
slices, depthwise twins), so removing channels keeps the graph valid. This module adds what a
pipeline needs around it: protected layers by name, equal pruning of ``chunk``-ed tensors,
pruning to one ratio or to exact per-layer counts (an allocation, see :mod:`edgekd.prune.search`),
and a forward check that names the layer when a model's code fixes a channel count that
pruning changed.
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import math
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from edgekd.errors import PruneError, closest
from edgekd.models.tracing import trace_layers
from edgekd.prune.importance import Importance, make_importance

CHANNEL_OPS = (tp.ops.OPTYPE.CONV, tp.ops.OPTYPE.LINEAR, tp.ops.OPTYPE.DEPTHWISE_CONV)


class GroupPruneFailed(PruneError):
    """torch-pruning failed inside while pruning one group; ``layer`` is its root."""

    def __init__(self, layer: str, message: str):
        super().__init__(message)
        self.layer = layer


@dataclass(frozen=True)
class ChannelPruning:
    """How channels are chosen: importance, per-layer (uniform) or global ranking, rounding, protection."""

    importance: Importance = Importance.L2
    global_ranking: bool = False
    round_to: int | None = None
    protect: tuple[str, ...] = ()
    max_layer_ratio: float = 0.9


def layers_in_order(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of the conv and linear layers in the order the forward pass runs them."""
    return [layer.name for layer in trace_layers(model, example)]


def protected_layers(model: nn.Module, example: torch.Tensor, patterns: tuple[str, ...]) -> list[str]:
    """Layer names matched by ``patterns`` (``first``, ``last`` or shell patterns); ``last`` always, and every
    layer that makes one of the model's outputs (each head of a model returning a tuple or dict).

    Those layers give the model's outputs, whose sizes must not change.
    """
    order = layers_in_order(model, example)
    if not order:
        raise PruneError(f"{type(model).__name__} has no Conv2d or Linear layer to prune")
    chosen = {order[-1], *output_layers(model, example)}
    for pattern in patterns:
        matched = {"first": [order[0]], "last": [order[-1]]}.get(pattern) or fnmatch.filter(order, pattern)
        if not matched:
            hint = closest(pattern, order)
            raise PruneError(f"protect: {pattern!r} matches no conv or linear layer"
                             + (f"; did you mean {', '.join(hint)}?" if hint else f"; the layers are {', '.join(order)}"))
        chosen.update(matched)
    return [n for n in order if n in chosen]


def output_layers(model: nn.Module, example: torch.Tensor) -> set[str]:
    """The conv and linear layers nearest to each output tensor: walking autograd's graph back from every
    output, the first layer met on each path (through BatchNorm, activations, reshapes)."""
    from edgekd.judge import flatten_outputs

    weights = {m.weight: name for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    with traceable(model):
        was_training = model.training
        outputs = model.eval()(example)
        model.train(was_training)
    stack = [t.grad_fn for t in flatten_outputs(outputs)[1] if t.grad_fn is not None]
    found, seen = set(), set()
    while stack:
        fn = stack.pop()
        if fn in seen:
            continue
        seen.add(fn)
        layer = layer_of(fn, weights)
        if layer is not None:
            found.add(layer)
            continue
        stack.extend(f for f, _ in fn.next_functions if f is not None)
    return found


def layer_of(fn, weights: dict) -> str | None:
    """The layer whose weight ``fn`` (an autograd node) consumes directly, or through a transpose (linear)."""
    for f, _ in fn.next_functions:
        if f is None:
            continue
        variable = getattr(f, "variable", None)
        if variable is not None and variable in weights:
            return weights[variable]
        if type(f).__name__.startswith(("TBackward", "PermuteBackward", "TransposeBackward")):
            inner = [getattr(g, "variable", None) for g, _ in f.next_functions if g is not None]
            hit = next((v for v in inner if v is not None and v in weights), None)
            if hit is not None:
                return weights[hit]
    return None


@contextlib.contextmanager
def traceable(model: nn.Module):
    """Autograd on for every parameter while torch-pruning traces ``model`` (it follows ``grad_fn``).

    A frozen model (``requires_grad=False``, as models loaded for inference or used as a KD
    teacher are) or a caller inside ``torch.no_grad()`` would otherwise trace to an empty graph:
    no group found, nothing pruned. The parameters' flags are restored afterwards.
    """
    frozen = [p for p in model.parameters() if not p.requires_grad]
    for p in frozen:
        p.requires_grad_(True)
    try:
        with torch.enable_grad():
            yield model
    finally:
        for p in frozen:
            p.requires_grad_(False)


def build_graph(model: nn.Module, example: torch.Tensor) -> tp.DependencyGraph:
    try:
        with traceable(model):
            return tp.DependencyGraph().build_dependency(model, example_inputs=example)
    except Exception as exc:  # tracing fails in many ways on unusual models
        raise PruneError(f"torch-pruning cannot trace {type(model).__name__} ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}); structured pruning needs a model whose "
                         "forward pass autograd can follow") from None


def split_channel_groups(model: nn.Module, graph: tp.DependencyGraph) -> dict[nn.Module, int]:
    """Layers whose outputs are ``chunk``-ed or ``split`` into equal parts: prune each part alike.

    The forward code splits by a fixed count or size, so every part must keep the same number
    of channels. Unequal splits are written into the code and cannot follow pruning.
    """
    names = {m: n for n, m in model.named_modules()}
    groups: dict[nn.Module, int] = {}
    for node in graph.module2node.values():
        if node.type != tp.ops.OPTYPE.SPLIT or getattr(node.grad_fn, "_saved_dim", 1) not in (1, -3):
            continue
        sizes = list(node.module.split_sizes or [])
        for producer in channel_producers(node, names):
            if len(set(sizes)) > 1:
                raise PruneError(f"layer {names[producer]}: its output is split into unequal parts {sizes} by the "
                                 f"model's code, which pruning cannot rewrite; add {names[producer]!r} to protect")
            existing = groups.get(producer, getattr(producer, "groups", 1))
            groups[producer] = math.lcm(existing, len(sizes))
    return groups


def channel_producers(node, names: dict) -> list[nn.Module]:
    """The conv/linear layers whose output channels reach ``node`` (through BN, activations, adds)."""
    found, stack, seen = [], list(node.inputs), set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if current.type in CHANNEL_OPS:
            found.append(current.module)
        elif current.type == tp.ops.OPTYPE.CONCAT:
            raise PruneError(f"a concatenation feeds a split near layer {names.get(current.module, '?')}; edgekd "
                             "cannot keep both consistent: protect the layers feeding the concatenation")
        else:
            stack.extend(current.inputs)
    return found


def make_pruner(model: nn.Module, example: torch.Tensor, how: ChannelPruning, *, ratio: float = 0.0,
                layer_ratios: dict[str, float] | None = None, exact: bool = False) -> tp.pruner.MetaPruner:
    """torch-pruning's pruner for ``model``: one ``ratio`` everywhere, or ``layer_ratios`` per root layer.

    ``exact``: the ratios already give whole, rounded channel counts (an allocation), so
    torch-pruning neither rounds nor caps them again.
    """
    graph_groups = split_channel_groups(model, build_graph(model, example))
    modules = dict(model.named_modules())
    rounding = None if exact or not how.round_to or how.round_to <= 1 else how.round_to
    try:
        with traceable(model):
            return tp.pruner.MetaPruner(
                model, example, importance=make_importance(how.importance), pruning_ratio=ratio,
                pruning_ratio_dict={modules[n]: r for n, r in (layer_ratios or {}).items()},
                global_pruning=how.global_ranking and not exact,
                max_pruning_ratio=0.999 if exact else how.max_layer_ratio, ignored_layers=[modules[n] for n in how.protect],
                round_to=rounding, out_channel_groups=graph_groups)
    except PruneError:
        raise
    except Exception as exc:  # torch-pruning fails inside on topologies it cannot follow
        raise PruneError(f"torch-pruning cannot analyse {type(model).__name__} ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}); protect the layers around the part it "
                         "cannot follow, or use metric: channels") from None


def prune_channels(model: nn.Module, example: torch.Tensor, ratio: float, how: ChannelPruning,
                   layer_ratios: dict[str, float] | None = None, *, exact: bool = False) -> nn.Module:
    """Remove ``ratio`` of the channels of every prunable group of ``model`` (or per root layer), in place."""
    if ratio <= 0 and not layer_ratios:
        return model
    names = {m: n for n, m in model.named_modules()}
    for group in make_pruner(model, example, how, ratio=ratio, layer_ratios=layer_ratios, exact=exact).step(
            interactive=True):
        try:
            group.prune()
        except Exception as exc:  # torch-pruning fails inside on topologies it cannot follow
            root = names.get(group[0].dep.target.module, "?")
            raise GroupPruneFailed(root, f"torch-pruning cannot prune the channels of layer {root} "
                                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                                         f"protect {root!r}") from None
    return model


def check_forward(model: nn.Module, example: torch.Tensor, expected: dict[str, tuple[int, ...]]) -> None:
    """Run the pruned model once; a failure names the last layer that ran and what fixed the size. ``expected``:
    the unpruned model's output shapes (:func:`edgekd.judge.output_shapes`)."""
    from edgekd.judge import output_shapes

    names = {m: n for n, m in model.named_modules()}
    ran: list[str] = []
    hooks = [m.register_forward_hook(lambda mod, *_: ran.append(names[mod]))
             for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            out = model.eval()(example)
    except Exception as exc:
        after = f"after layer {ran[-1]!r}" if ran else "before its first layer"
        raise PruneError(f"pruning breaks {type(model).__name__}'s forward pass {after} ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0]}): the code there fixes a channel count (a view/reshape "
                         f"or split with constants); protect the layers feeding it, e.g. protect: [{ran[-1] if ran else 'first'!r}]"
                         ) from None
    finally:
        for h in hooks:
            h.remove()
    if output_shapes(out) != expected:
        shapes = lambda s: next(iter(s.values())) if len(s) == 1 else s  # noqa: E731  (one output: its shape)
        raise PruneError(f"pruning changed the output shape from {shapes(expected)} to {shapes(output_shapes(out))}; "
                         "protect the layer that produces the output")


def copy_with_gradients(model: nn.Module) -> nn.Module:
    """A deep copy that keeps each parameter's ``.grad`` (Taylor importance reads them)."""
    clone = copy.deepcopy(model)
    for src, dst in zip(model.parameters(), clone.parameters()):
        dst.grad = None if src.grad is None else src.grad.clone()
    return clone
