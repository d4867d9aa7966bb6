"""GPU check: edgekd's CUDA paths on one GPU, in one command, each part guarded and timed.

* ``loop``: edgekd's training loop (:func:`edgekd.train.fit`, device cuda, AMP) against a plain
  PyTorch AMP loop (uint8 batches moved to the GPU, normalized there, autocast, the same SGD),
  ResNet-18 (``resnet18-imagenet``) at 224 px on a generated JPEG folder decoded into memory
  (:func:`benchmarks.scale.generate`). Images/s of each: the median of the epochs after a
  warm-up epoch; ``ratio`` = edgekd's images/s over the plain loop's. Written as ``loop.gpu``.
* ``compress``: one ``edgekd.compress`` of MobileNetV2 (``mobilenetv2-imagenet``) at 224 px on a
  small generated folder, device cuda: teacher (1 epoch) → 30% MAC pruning (1 recovery epoch)
  → int8 PTQ → export → benchmark, for jetson-orin. Per stage: seconds, accuracy, and how many
  leaf-layer forward calls ran on each device (the training stages must show CUDA).
* ``qat``: NNCF's fake-quantizers (:mod:`edgekd.quantize.qat`) calibrated on CUDA, then a few
  training steps under autocast: every quantizer tensor on CUDA, every loss finite.
* ``cuda_tests``: the tests in tests/ that carry a cuda/gpu marker or a CUDA skipif, run with
  pytest on the GPU (``skipped`` when there are none).

Results go to benchmarks/results/gpu_check.json (``--out``), rewritten atomically after every
part, with versions and the GPU's name. With no CUDA GPU it stops with one line and status 2,
unless ``--cpu-dry-run``: every part then runs on the CPU at a tiny size (32 px, a few images,
two epochs) to check the logic, writing /tmp/edgekd-gpu-check/gpu_check.json by default.
Exit status 1 when a part failed.

On the GPU machine (expected 3 to 5 minutes, under 6; Python 3.12 there lacks nncf, onnxsim, torch-pruning
and pydantic: ``bash benchmarks/gpu_wheels.sh`` here first puts their wheels, 12 MiB, in the
git-ignored gpu_wheels/), the device tool's ``carry: ["gpu_wheels"]`` and command::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site gpu_wheels/*.whl
    && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16
    && (python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1
        || echo "note: no editable install; edgekd imports from PYTHONPATH")
    && set -o pipefail && python3 benchmarks/gpu_check.py --out $OUT/gpu_check.json 2>&1 | tee $OUT/gpu_check.log

(one line, joined with spaces), then here: copy the returned gpu_check.json to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/scale.py, imported as a sibling

from scale import CLASSES, generate  # noqa: E402

from edgekd import device as devices  # noqa: E402
from edgekd.atomic import write_json  # noqa: E402
from edgekd.data import DataSpec, TensorImages, load_data, make_loader  # noqa: E402
from edgekd.models import create_model  # noqa: E402
from edgekd.train import TrainConfig, fit  # noqa: E402
from edgekd.versions import library_versions  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "gpu_check.json"
DRY_RESULTS = Path(tempfile.gettempdir()) / "edgekd-gpu-check" / "gpu_check.json"
PARTS = ("loop", "compress", "qat", "cuda_tests")


@dataclass(frozen=True)
class Sizes:
    """How big each part runs: the GPU check's sizes, or the CPU dry run's tiny ones."""

    image: int = 224
    loop_model: str = "resnet18-imagenet"
    compress_model: str = "mobilenetv2-imagenet"
    qat_model: str = "mobilenetv2-imagenet"
    loop_images: int = 2048
    loop_batch: int = 128
    loop_epochs: int = 4  # the first is the warm-up
    compress_images: int = 320
    compress_batch: int = 64
    compress_workers: int | None = None  # decoding processes for the streamed folder; None: from the cores
    compress_round_to: int | None = None  # pruned channel multiple; None: the target's (32 on jetson-orin)
    qat_images: int = 256
    qat_batch: int = 32
    qat_steps: int = 6
    test_timeout: int = 240


GPU_SIZES = Sizes()
# The dry run checks the logic, not the numbers: small zoo models, 32 px, as few images as the stages accept
# (quantize wants its calibration images plus 100 to score with).
DRY_SIZES = Sizes(image=32, loop_model="cnn-tiny", compress_model="cnn-tiny", qat_model="cnn-tiny", loop_images=48,
                  loop_batch=16, loop_epochs=2, compress_images=150, compress_batch=32, compress_workers=0,
                  compress_round_to=4,
                  qat_images=24, qat_batch=8, qat_steps=2, test_timeout=120)


def in_memory(work: Path, count: int, size: int):
    """A generated 10-class JPEG folder of ``count`` ``size``-px images, decoded into memory (a DataBundle)."""
    folder = generate(work / f"jpeg-{size}px-{count}", count, size=size)
    return load_data(DataSpec(source=str(folder), image_size=(size, size), storage="memory"))


def amp(device: torch.device) -> torch.dtype | None:
    """The autocast dtype edgekd trains with on ``device`` (bfloat16 on recent GPUs; None on the CPU)."""
    return devices.amp_dtype(device, bf16=device.type == "cuda" and torch.cuda.is_bf16_supported())


def dtype_name(dtype: torch.dtype | None) -> str | None:
    return str(dtype).removeprefix("torch.") if dtype is not None else None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_amp_epochs(model: nn.Module, dataset: TensorImages, info, config: TrainConfig,
                     device: torch.device) -> list[float]:
    """A plain PyTorch AMP loop: uint8 batch to the GPU, normalize there, autocast forward, backward, step."""
    mean = torch.tensor(info.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(info.std, device=device).view(1, -1, 1, 1)
    dtype = amp(device)
    scaler = torch.amp.GradScaler(device.type) if dtype is torch.float16 else None
    model.to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=True,
                                weight_decay=config.weight_decay)
    images = dataset.images.pin_memory() if device.type == "cuda" else dataset.images
    generator, seconds = torch.Generator().manual_seed(0), []
    for _ in range(config.epochs):
        order = torch.randperm(len(dataset), generator=generator)
        sync(device)
        t0 = time.perf_counter()
        for start in range(0, len(dataset), config.batch_size):
            index = order[start:start + config.batch_size]
            batch = images[index].to(device, non_blocking=True)
            labels = dataset.labels[index].to(device, non_blocking=True)
            x = ((batch.float() * info.scale - mean) / std).contiguous(memory_format=torch.channels_last)
            with devices.autocast(device, dtype):
                loss = F.cross_entropy(model(x), labels)
            optimizer.zero_grad(set_to_none=True)
            if scaler:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
        sync(device)
        seconds.append(time.perf_counter() - t0)
    return seconds


def loop(work: Path, sizes: Sizes, device: torch.device) -> dict:
    """edgekd's ``fit`` against the plain AMP loop: images/s, the median of the epochs after the first."""
    data = in_memory(work, sizes.loop_images, sizes.image)
    count = len(data.train)
    config = TrainConfig(epochs=sizes.loop_epochs, batch_size=sizes.loop_batch, lr=0.01, schedule="cosine",
                         augment=None, device=str(device))

    def fresh() -> nn.Module:
        torch.manual_seed(0)
        return create_model(sizes.loop_model, num_classes=CLASSES, input_size=(sizes.image, sizes.image))

    edgekd_s = [epoch["seconds"] for epoch in fit(fresh(), data, config, progress=False).history]
    plain_s = plain_amp_epochs(fresh(), data.train, data.info, config, device)
    edgekd_t, plain_t = float(np.median(edgekd_s[1:])), float(np.median(plain_s[1:]))
    return {"model": sizes.loop_model, "input": f"3x{sizes.image}x{sizes.image}", "device": str(device),
            "amp": dtype_name(amp(device)), "train_images": count, "batch_size": sizes.loop_batch,
            "epochs": sizes.loop_epochs, "warmup_epochs": 1,
            "edgekd_seconds": [round(s, 3) for s in edgekd_s], "plain_seconds": [round(s, 3) for s in plain_s],
            "edgekd_images_per_second": round(count / edgekd_t, 1),
            "plain_images_per_second": round(count / plain_t, 1), "ratio": round(plain_t / edgekd_t, 3)}


@contextlib.contextmanager
def device_census(stage_types):
    """Count leaf-layer forward calls per (stage, device type) while the pipeline runs: {stage: {device: n}}."""
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    current = ["(between stages)"]

    def hook(module, args):
        if args and isinstance(args[0], torch.Tensor) and not module._modules:
            counts[current[0]][args[0].device.type] += 1

    def traced(apply):
        def apply_traced(self, handoff, ctx, row):
            current[0] = self.stage
            try:
                return apply(self, handoff, ctx, row)
            finally:
                current[0] = "(between stages)"
        return apply_traced

    own = {cls: cls.__dict__.get("apply") for cls in stage_types}
    for cls in stage_types:
        cls.apply = traced(cls.apply)
    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield counts
    finally:
        handle.remove()
        for cls, apply in own.items():
            if apply is None:
                del cls.apply
            else:
                cls.apply = apply


def compress(work: Path, sizes: Sizes, device: torch.device) -> dict:
    """One 224-px compress of MobileNetV2 on the run's device; the stages that train must have run there."""
    import edgekd
    from edgekd.recipe import Recipe
    from edgekd.stages import STAGES

    folder = generate(work / f"jpeg-{sizes.image}px-{sizes.compress_images}", sizes.compress_images,
                      size=sizes.image)
    one = {"epochs": 1, "batch_size": sizes.compress_batch, "lr": 0.01, "schedule": "cosine",
           "augment": {"hflip": True}}
    stages = (STAGES["teacher"](model=sizes.compress_model, train=one, cache=False),
              STAGES["prune"](reduction=0.3, recovery={"train": one}, sparse_recovery_epochs=0, report_batches=(1,),
                              latency_batch=1, round_to=sizes.compress_round_to),
              STAGES["quantize"](method="ptq", calibration_images=32, accuracy_control=False, report_batches=(1,)),
              # The generated labels do not depend on the images, so the model stays at chance and its near-equal
              # scores flip under int8 on a few images: the 95% agreement bar would test luck, not quantization.
              STAGES["export"](min_int8_agreement=0.5), STAGES["benchmark"](batch_sizes=(1,)))
    recipe = Recipe(name="gpu-check-224", stages=stages,
                    data=DataSpec(source=str(folder), image_size=(sizes.image, sizes.image), storage="stream",
                                   workers=sizes.compress_workers))
    with tempfile.TemporaryDirectory(dir=work) as out, device_census({type(s) for s in stages}) as counts:
        result = edgekd.compress(target="jetson-orin", recipe=recipe, out=Path(out) / "run", progress=False,
                                 device=str(device))
    ran = {name: dict(by_device) for name, by_device in counts.items()}
    rows = {s["name"]: {"seconds": s["seconds"], "accuracy": s["accuracy"],
                        "selection_accuracy": s["selection_accuracy"], "params": s["params"], "macs": s["macs"],
                        "forwards": ran.get(s["name"], {})} for s in result.report["stages"]}
    missing = [s.stage for s in stages if s.stage not in rows]
    off_device = [name for name in ("teacher", "prune") if not ran.get(name, {}).get(device.type)]
    if missing or off_device:
        raise RuntimeError(f"stages not finished: {missing}; training stages with no forward on {device.type}: "
                           f"{off_device} (forwards per stage: {ran})")
    return {"model": sizes.compress_model, "input": f"3x{sizes.image}x{sizes.image}", "device": str(device),
            "target": "jetson-orin", "train_images": sizes.compress_images, "stages": rows,
            "accuracy": result.accuracy}


def qat(work: Path, sizes: Sizes, device: torch.device) -> dict:
    """NNCF fake-quantizers calibrated on the device, then a few autocast training steps there."""
    from nncf.torch.quantization.layers import BaseQuantizer

    from edgekd.quantize.qat import calibrated_fake_quantizers, fold_batchnorm, sign_fake_quantizers
    from edgekd.quantize.scheme import Scheme

    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "900")  # as edgekd's QAT: the first use compiles it
    data = in_memory(work, sizes.qat_images, sizes.image)
    torch.manual_seed(0)
    model = create_model(sizes.qat_model, num_classes=CLASSES, input_size=(sizes.image, sizes.image))
    loader = make_loader(data.train, data.info, batch_size=sizes.qat_batch, train=True)
    calibration = [batch for _, batch in zip(range(2), loader)]
    with devices.use(str(device)):
        t0 = time.perf_counter()
        quantized = calibrated_fake_quantizers(fold_batchnorm(copy.deepcopy(model).eval()), calibration,
                                               Scheme.TENSORRT)
        signed = sign_fake_quantizers(quantized)
        calibration_s = time.perf_counter() - t0
    quantizers = [m for m in quantized.modules() if isinstance(m, BaseQuantizer)]
    optimizer = torch.optim.SGD(quantized.parameters(), lr=1e-3, momentum=0.9)
    quantized.to(device).train()
    losses, step_s, dtype = [], [], amp(device)
    for step, (images, labels) in zip(range(sizes.qat_steps), loader):
        t0 = time.perf_counter()
        images, labels = images.to(device), labels.to(device)
        with devices.autocast(device, dtype):
            loss = F.cross_entropy(quantized(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        step_s.append(time.perf_counter() - t0)
    places = collections.Counter(t.device.type for q in quantizers for t in (*q.parameters(), *q.buffers()))
    scale_grads = [p.grad for q in quantizers for p in q.parameters() if p.grad is not None]
    grads_finite = all(bool(torch.isfinite(g).all()) for g in scale_grads)
    if not quantizers or set(places) != {device.type} or not all(map(math.isfinite, losses)) or not grads_finite:
        raise RuntimeError(f"{len(quantizers)} quantizers, their tensors on {dict(places)}, losses {losses}, "
                           f"quantizer gradients finite: {grads_finite}")
    return {"model": f"{sizes.qat_model} (BatchNorm folded)", "input": f"3x{sizes.image}x{sizes.image}",
            "device": str(device), "amp": dtype_name(dtype), "quantizers": len(quantizers),
            "signed": signed, "quantizer_tensors": dict(places), "quantizer_grads": len(scale_grads),
            "losses": [round(v, 4) for v in losses], "calibration_seconds": round(calibration_s, 2),
            "first_step_seconds": round(step_s[0], 3),  # includes NNCF's extension build on first use
            "step_seconds": round(float(np.median(step_s[1:] or step_s)), 4), "batch_size": sizes.qat_batch}


# A test is CUDA-marked when it carries a marker named cuda/gpu (or requires_cuda, ...) or a skipif
# whose condition or reason names CUDA or a GPU. Files are pre-selected with MARKED, items by SELECT.
MARKED = re.compile(r"mark\.\w*(cuda|gpu)\w*|skipif\([^)]*(cuda|gpu)|requires_?(cuda|gpu)", re.IGNORECASE)
SELECT = """
import re, sys, pytest
NAMED = re.compile(r"cuda|gpu", re.IGNORECASE)
def marked(item):
    for m in item.iter_markers():
        said = " ".join(map(str, m.args)) + " " + str(m.kwargs.get("reason", ""))
        if NAMED.search(m.name) or (m.name == "skipif" and NAMED.search(said)):
            return True
    return False
class CudaOnly:
    def pytest_collection_modifyitems(self, config, items):
        keep = [i for i in items if marked(i)]
        config.hook.pytest_deselected(items=[i for i in items if not marked(i)])
        items[:] = keep
sys.exit(pytest.main(sys.argv[1:], plugins=[CudaOnly()]))
"""


def cuda_tests(tests: Path, log: Path, timeout: int) -> dict:
    """Run the CUDA-marked tests under ``tests`` with pytest in a child process; counts from its JUnit XML."""
    files = sorted(str(f) for f in tests.rglob("test_*.py") if MARKED.search(f.read_text(errors="replace")))
    names = [str(Path(f).relative_to(ROOT)) if ROOT in Path(f).parents else f for f in files]
    if not files:
        return {"status": "skipped", "reason": f"no test in {tests.name}/ carries a cuda/gpu marker or a CUDA skipif",
                "files": []}
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        done = subprocess.run([sys.executable, "-c", SELECT, "-q", "-rs", "-p", "no:cacheprovider",
                               f"--junitxml={xml}", *files], cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(done.stdout + done.stderr)
        if done.returncode == 5:  # pytest: no tests collected (after the selection)
            return {"status": "skipped", "reason": "the files name CUDA, but no test is marked for it", "files": names}
        suites = ElementTree.parse(xml).getroot().iter("testsuite") if xml.exists() else []
    counts = collections.Counter()
    failed = []
    for suite in suites:
        for key in ("tests", "failures", "errors", "skipped"):
            counts[key] += int(suite.get(key, 0))
        failed += [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
                   if case.find("failure") is not None or case.find("error") is not None]
    status = "ok" if done.returncode == 0 else "failed"
    record = {"status": status, "files": names, "exit_code": done.returncode,
              "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"], **counts,
              "failed_tests": failed, "log": log.name}
    if status == "failed":
        record["error"] = ((done.stdout + done.stderr).strip().splitlines() or ["pytest failed"])[-1]
    return record


def machine(device: torch.device) -> dict:
    info = {"cpu_cores": len(os.sched_getaffinity(0)), "platform": platform.platform(), "device": str(device),
            "cuda": torch.version.cuda, **library_versions()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=torch.cuda.get_device_name(device), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}", bf16=torch.cuda.is_bf16_supported(),
                    cudnn=torch.backends.cudnn.version())
    return info


def run_part(name: str, part, device: torch.device) -> dict:
    """One part, guarded: its record with ``status`` (ok | failed | skipped), ``seconds`` and any ``error``."""
    print(f"== {name}", flush=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    try:
        record = part()
        record = {"status": record.pop("status", "ok"), **record}
    except Exception as exc:  # recorded, and the next part runs
        record = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:2000],
                  "traceback": traceback.format_exc().splitlines()[-12:]}
    record["seconds"] = round(time.perf_counter() - t0, 2)
    if device.type == "cuda":
        record["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        torch.cuda.empty_cache()
    return record


def summary(results: dict) -> str:
    lines = [f"gpu_check on {results['machine'].get('gpu', 'the CPU (dry run)')}: {results['seconds']} s"]
    for name in PARTS:
        record = results["loop"]["gpu"] if name == "loop" else results[name]
        detail = record.get("error") or record.get("reason") or ""
        if record["status"] == "ok" and name == "loop":
            detail = (f"edgekd {record['edgekd_images_per_second']} img/s, plain {record['plain_images_per_second']} "
                      f"img/s, ratio {record['ratio']}")
        elif record["status"] == "ok" and name == "compress":
            detail = ", ".join(f"{k} {v['seconds']} s" for k, v in record["stages"].items())
        elif record["status"] == "ok" and name == "qat":
            detail = f"{record['quantizers']} quantizers on {record['quantizer_tensors']}, losses {record['losses']}"
        elif record["status"] == "ok" and name == "cuda_tests":
            detail = f"{record['passed']} passed, {record['skipped']} skipped of {record['tests']}"
        lines.append(f"  {name:<10} {record['status']:<7} {record['seconds']:>7.1f} s  {detail}"[:300])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-dry-run", action="store_true", help="run every part on the CPU at a tiny size")
    parser.add_argument("--out", type=Path, help=f"results JSON (default {RESULTS}; dry run {DRY_RESULTS})")
    parser.add_argument("--work", type=Path, help="where generated images go (default: a temporary folder)")
    parser.add_argument("--tests", type=Path, default=ROOT / "tests", help="folder searched for CUDA-marked tests")
    parser.add_argument("--only", choices=PARTS, action="append", help="run only these parts (others: skipped)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() and not args.cpu_dry_run:
        print(f"gpu_check: PyTorch sees no CUDA GPU here (torch {torch.__version__}, CUDA build: "
              f"{torch.version.cuda or 'no'}); run it on a GPU machine, or pass --cpu-dry-run", file=sys.stderr)
        return 2
    device = torch.device("cpu") if args.cpu_dry_run else torch.device("cuda", 0)
    sizes = DRY_SIZES if args.cpu_dry_run else GPU_SIZES
    out = args.out or (DRY_RESULTS if args.cpu_dry_run else RESULTS)
    only = set(args.only or PARTS)
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edgekd-gpu-check-")))
        work.mkdir(parents=True, exist_ok=True)
        parts = {"loop": lambda: loop(work, sizes, device), "compress": lambda: compress(work, sizes, device),
                 "qat": lambda: qat(work, sizes, device),
                 "cuda_tests": lambda: cuda_tests(args.tests, out.parent / f"{out.stem}_pytest.log",
                                                  sizes.test_timeout)}
        results = {"dry_run": args.cpu_dry_run, "machine": machine(device), "sizes": sizes.__dict__,
                   "loop": {"gpu": None}, **{name: None for name in PARTS[1:]}}
        t0 = time.perf_counter()
        for name in PARTS:
            record = run_part(name, parts[name], device) if name in only else {
                "status": "skipped", "reason": "not in --only", "seconds": 0.0}
            if name == "loop":
                results["loop"]["gpu"] = record
            else:
                results[name] = record
            results["seconds"] = round(time.perf_counter() - t0, 1)
            write_json(out, results)  # after every part: a run cut short keeps what it finished
    print(summary(results))
    print(f"wrote {out}")
    records = [results["loop"]["gpu"], *(results[name] for name in PARTS[1:])]
    return 1 if any(r["status"] == "failed" for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
