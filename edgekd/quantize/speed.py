"""Which layers run slower in int8 than in float on a CPU target's runtime, so they stay float.

Two sources, as everywhere in edgekd: what this machine shows when it can stand for the target,
and the target's latency estimate otherwise.

* **Here (ONNX Runtime on this CPU):** ONNX Runtime turns a DequantizeLinear → Conv →
  QuantizeLinear pattern into an int8 kernel (QLinearConv) only where it has one; elsewhere
  (on x86, depthwise convs among them) the conv runs in float on dequantized inputs, without
  the blocked NCHWc layout its float version gets, and pays the Q/DQ nodes on top: measured
  4–9× slower than float for MobileNetV2. Such layers are read off the graph ONNX Runtime
  actually runs (its optimized model), which no timing noise can blur.
* **Estimated (a target this machine cannot stand for):** each conv's fused kernel is costed
  in int8 and in float by :mod:`edgekd.estimate` (the target's peaks and calibration, int8
  grouped convs at their own efficiency); a layer whose int8 kernel costs more stays float.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx

from torch.utils.data import DataLoader

from edgekd.estimate import kernel_costs, roofline
from edgekd.quantize.graph import COMPUTE_OPS, module_name
from edgekd.quantize.ptq import BiasCorrection, quantize_onnx
from edgekd.quantize.scheme import Scheme
from edgekd.runtime.host import can_stand_for
from edgekd.targets import TargetProfile

RAN_DEQUANTIZED = ("ONNX Runtime on this machine has no int8 kernel for it: it runs as a float conv on "
                   "dequantized inputs (slower than float)")


@dataclass(frozen=True)
class SlowLayer:
    """A layer kept float because int8 does not pay there, and why."""

    node: str
    why: str

    def to_dict(self) -> dict:
        return {"node": self.node, "layer": module_name(self.node), "why": self.why}


def slow_int8_layers(float_model: onnx.ModelProto, int8_model: onnx.ModelProto, target: TargetProfile, *,
                     here: bool, batches: tuple[int, ...], threads: int | None = None) -> list[SlowLayer]:
    """Quantized compute nodes of ``int8_model`` that run slower than float on ``target``.

    ``here``: this machine stands for the target (read ONNX Runtime's optimized graph); else estimate.
    """
    if here:
        return [SlowLayer(node, RAN_DEQUANTIZED) for node in dequantized_by_runtime(int8_model, threads)]
    if target.peak is None or target.memory_bandwidth_gbs is None:
        return []
    return estimated_slower(float_model, int8_model, target, batches)


def dequantized_by_runtime(int8_model: onnx.ModelProto, threads: int | None = None) -> list[str]:
    """Compute nodes ONNX Runtime still runs in float on DequantizeLinear outputs after its optimizations."""
    import onnxruntime as ort

    quantized = {n.name for n in int8_model.graph.node if n.op_type in COMPUTE_OPS}
    with tempfile.TemporaryDirectory(prefix="edgekd-ort-") as folder:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(Path(folder) / "optimized.onnx")
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        ort.InferenceSession(int8_model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        optimized = onnx.load(options.optimized_model_filepath)
    producers = {out: node for node in optimized.graph.node for out in node.output}
    slow = []
    for node in optimized.graph.node:
        if node.name not in quantized or not node.input:
            continue
        producer = producers.get(node.input[0])
        if producer is not None and producer.op_type == "DequantizeLinear":
            slow.append(node.name)
    return slow


def estimated_slower(float_model: onnx.ModelProto, int8_model: onnx.ModelProto, target: TargetProfile,
                     batches: tuple[int, ...]) -> list[SlowLayer]:
    """Layers whose int8 kernel the target's estimate costs above its float kernel at any of ``batches``."""
    slow: dict[str, SlowLayer] = {}
    for batch in batches:
        floats = {c.name: kernel_ms(c, target, batch) for c in kernel_costs(float_model, target, batch)}
        for cost in kernel_costs(int8_model, target, batch):
            if not cost.int8 or cost.name not in floats or cost.name in slow:
                continue
            int8_ms = kernel_ms(cost, target, batch)
            if int8_ms > floats[cost.name]:
                slow[cost.name] = SlowLayer(cost.name, f"estimated slower in int8 on {target.name} "
                                                       f"({int8_ms:.4f} vs {floats[cost.name]:.4f} ms at batch {batch})")
    return list(slow.values())


def kernel_ms(cost, target: TargetProfile, batch: int) -> float:
    """One kernel's estimated milliseconds (the per-inference overhead left out)."""
    return roofline([cost], target, batch, target.estimate).ms - target.estimate.inference_overhead_us / 1000


def without_slow_layers(int8_model: onnx.ModelProto, quantize, find_slow, *, keep: list[str],
                        rounds: int = 3) -> tuple[onnx.ModelProto, list[SlowLayer]]:
    """Requantize with the slow layers float, until none is left (keeping one float changes its neighbours').

    ``quantize(nodes)`` gives the int8 model with ``nodes`` float; ``find_slow(model)`` the slow layers.
    """
    slow: list[SlowLayer] = []
    for _ in range(rounds):
        found = [s for s in find_slow(int8_model) if s.node not in {x.node for x in slow}]
        if not found:
            break
        slow += found
        int8_model = quantize(keep + [s.node for s in slow])
    return int8_model, slow


def float_where_slow(float_model: onnx.ModelProto, int8_model: onnx.ModelProto, calibration: DataLoader,
                     scheme: Scheme, target: TargetProfile, *, batches: tuple[int, ...], threads: int | None = None,
                     bias_correction: BiasCorrection = BiasCorrection.FULL,
                     keep: tuple[str, ...] | list[str] = ()) -> tuple[onnx.ModelProto, list[SlowLayer]]:
    """``int8_model`` (PTQ of ``float_model`` on ``calibration`` in ``scheme``) requantized with the layers int8 makes
    slower on ``target`` kept float, besides ``keep`` (layers already float for accuracy); and those slow layers.

    Where this machine stands for the target, slow layers are read off ONNX Runtime's optimized graph; elsewhere
    they are estimated at ``batches``. The quantize stage's step 5, callable alone.
    """
    here = can_stand_for(target)
    requantize = lambda nodes: quantize_onnx(float_model, calibration, scheme, keep_float=nodes,  # noqa: E731
                                             bias_correction=bias_correction).model
    return without_slow_layers(int8_model, requantize, lambda m: slow_int8_layers(
        float_model, m, target, here=here, batches=batches, threads=threads), keep=list(keep))
