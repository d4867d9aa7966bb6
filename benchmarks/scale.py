"""Real scale on this machine: streamed 224-px JPEG folders and the training loop's overhead at 224 px.

* ``streaming``: peak resident memory of one training epoch over a generated folder of 20,000
  224-px JPEGs against the same over 2,000 (``rss_ratio``: memory must not grow with the
  dataset), each epoch in a fresh process with 2 decoding workers: the training process's peak
  plus each worker's peak (``RUSAGE_CHILDREN`` gives the largest worker's). The epoch trains a
  tiny model (a 4×4-stride conv and a linear layer) so that decoding, not compute, is what
  runs: this measures the data path. Decoding speed (train transforms, 224 px, no model) with
  0 and 2 workers.
* ``loop.cpu``: edgekd's training epoch (:func:`edgekd.train.fit`, validation excluded: its
  per-epoch ``seconds``) against a plain PyTorch loop (the same model, images, batch size,
  optimizer and memory format), ResNet-18 at 224 on this CPU, a few batches, timed alternately.
* ``loop.gpu``: null unless this runs where CUDA is (the same with autocast).
* ``compress_224``: one ``compress`` of MobileNetV2 at 224 px for jetson-orin on a generated 10-class
  JPEG folder (200 training images, streamed): teacher (one epoch) → 30% MAC pruning (one recovery
  epoch) → int8 PTQ → export → benchmark; wall seconds per stage. A measure of the pipeline's cost
  at 224 px on this CPU, not of accuracy (random images).

Generated folders live under /tmp (``--work``), never in the repository.

Run: nice -n 10 .venv/bin/python benchmarks/scale.py [--only streaming|loop|compress_224] [--work /tmp/edgekd-scale]
Writes benchmarks/results/scale.json (``--only`` merges into it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgekd.atomic import write_json
from edgekd.data import DataSpec, ReportSplit, TensorImages, load_data, make_loader
from edgekd.data.datasets import DataBundle, DataInfo
from edgekd.data.loader import Augment
from edgekd.models import create_model
from edgekd.train import TrainConfig, fit
from edgekd.versions import library_versions

RESULTS = Path(__file__).parent / "results" / "scale.json"
CLASSES = 10


def generate(folder: Path, count: int, *, size: int = 224, seed: int = 0) -> Path:
    """``count`` 224-px JPEGs in ROOT/train/CLASS (plus 10 per class in val/): smooth random colour fields."""
    from PIL import Image

    done = folder / f".done-{count}"
    if done.exists():
        return folder
    rng = np.random.default_rng(seed)
    for split, n in (("train", count), ("val", 10 * CLASSES)):
        for i in range(n):
            label = i % CLASSES
            path = folder / split / f"c{label}" / f"{i:06d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            coarse = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
            image = Image.fromarray(coarse).resize((size, size), Image.BILINEAR)
            image.save(path, quality=90)
    done.touch()
    return folder


class Probe(nn.Module):
    """A tiny classifier for 224-px input (a 4×4-stride conv, global pool, linear): the epoch is all data path."""

    def __init__(self, num_classes: int = CLASSES):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 4, 4)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.conv(x)), 1).flatten(1))


def epoch_child(folder: str, workers: int) -> None:
    """In a fresh process: one streamed training epoch; prints peak RSS of this process and of its largest worker."""
    data = load_data(DataSpec(source=folder, image_size=(224, 224), storage="stream", workers=workers))
    t0 = time.perf_counter()
    result = fit(Probe(), data, TrainConfig(epochs=1, batch_size=64, lr=0.01, schedule="cosine",
                                            augment={"hflip": True}), progress=False)
    seconds = time.perf_counter() - t0
    main_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    worker_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"images": len(data.train), "seconds": round(seconds, 1), "train_seconds": result.seconds,
                      "main_peak_mb": round(main_kb / 1024, 1), "worker_peak_mb": round(worker_kb / 1024, 1)}))


def streamed_epoch(folder: Path, workers: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--epoch-child", str(folder), "--workers", str(workers)],
                         capture_output=True, text=True, check=True)
    record = json.loads(out.stdout.strip().splitlines()[-1])
    record["peak_mb"] = round(record["main_peak_mb"] + workers * record["worker_peak_mb"], 1)
    return record


def decode_rate(folder: Path, workers: int, images: int = 1000) -> float:
    """Training images decoded, augmented and normalized per second (no model)."""
    data = load_data(DataSpec(source=str(folder), image_size=(224, 224), storage="stream", workers=workers))
    loader = make_loader(data.train, data.info, batch_size=50, train=True, augment=Augment())
    seen, t0 = 0, None
    for batch in loader:
        if t0 is None:  # the first batch pays for starting the workers
            t0 = time.perf_counter()
            continue
        seen += len(batch[1])
        if seen >= images:
            break
    return round(seen / (time.perf_counter() - t0), 1)


def streaming(work: Path) -> dict:
    small, large = generate(work / "jpeg-2000", 2000), generate(work / "jpeg-20000", 20000)
    epochs = {"2000": streamed_epoch(small, 2), "20000": streamed_epoch(large, 2)}
    return {"epochs": epochs, "rss_ratio": round(epochs["20000"]["peak_mb"] / epochs["2000"]["peak_mb"], 3),
            "images_per_second": {"workers_0": decode_rate(large, 0), "workers_2": decode_rate(large, 2)},
            "model": "Probe (4x4-stride conv + linear): the epoch is the data path", "input": "3x224x224",
            "batch_size": 64, "workers": 2}


def plain_epoch(model: nn.Module, dataset: TensorImages, info: DataInfo, config: TrainConfig) -> float:
    """A plain PyTorch loop over the same images: normalize, forward, cross-entropy, backward, step."""
    mean, std = torch.tensor(info.mean).view(1, -1, 1, 1), torch.tensor(info.std).view(1, -1, 1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=True,
                                weight_decay=config.weight_decay)
    model.to(memory_format=torch.channels_last).train()
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    for start in range(0, len(dataset), config.batch_size):
        index = order[start:start + config.batch_size]
        images = ((dataset.images[index].float() / 255 - mean) / std).contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(images), dataset.labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - t0


def loop_cpu(batches: int, batch_size: int, rounds: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    count = batches * batch_size
    train = TensorImages(torch.randint(0, 256, (count, 3, 224, 224), dtype=torch.uint8, generator=generator),
                         torch.randint(0, CLASSES, (count,), generator=generator))
    val = TensorImages(train.images[:8], train.labels[:8])
    info = DataInfo(name="random 224", num_classes=CLASSES, channels=3, image_size=(224, 224),
                    mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    bundle = DataBundle(train, val, ReportSplit(val), info)  # nothing is chosen or reported here: a loop timing
    config = TrainConfig(epochs=1, batch_size=batch_size, lr=0.01, schedule="cosine", augment=None, device="cpu")
    fresh = lambda: create_model("resnet18-imagenet", num_classes=CLASSES, input_size=(224, 224))  # noqa: E731
    edgekd_s, plain_s = [], []
    for _ in range(rounds):  # alternately, so both see the same machine load
        edgekd_s.append(fit(fresh(), bundle, config, progress=False).history[0]["seconds"])
        plain_s.append(plain_epoch(fresh(), train, info, config))
    edgekd_t, plain_t = float(np.median(edgekd_s)), float(np.median(plain_s))
    return {"model": "resnet18-imagenet", "input": "3x224x224", "batches": batches, "batch_size": batch_size,
            "rounds": rounds, "edgekd_seconds": [round(s, 2) for s in edgekd_s],
            "plain_seconds": [round(s, 2) for s in plain_s],
            "edgekd_images_per_second": round(count / edgekd_t, 2), "plain_images_per_second": round(count / plain_t, 2),
            "ratio": round(plain_t / edgekd_t, 3), "threads": torch.get_num_threads()}


def compress_224(work: Path) -> dict:
    import tempfile

    import edgekd
    from edgekd.recipe import Recipe
    from edgekd.stages import STAGES

    folder = generate(work / "jpeg-200", 200)
    one = {"epochs": 1, "batch_size": 32, "lr": 0.01, "schedule": "cosine", "augment": {"hflip": True}}
    recipe = Recipe(name="compress-224", data=DataSpec(source=str(folder), image_size=(224, 224), storage="stream"),
                    stages=(STAGES["teacher"](model="mobilenetv2-imagenet", train=one, cache=False),
                            STAGES["prune"](reduction=0.3, recovery={"train": one}, sparse_recovery_epochs=0,
                                            report_batches=(1,), latency_batch=1),
                            STAGES["quantize"](method="ptq", calibration_images=64, accuracy_control=False,
                                               report_batches=(1,)),
                            STAGES["export"](), STAGES["benchmark"](batch_sizes=(1,))))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=work) as out:
        result = edgekd.compress(target="jetson-orin", recipe=recipe, out=Path(out) / "run", progress=False)
    wall = time.perf_counter() - t0
    return {"model": "mobilenetv2-imagenet", "input": "3x224x224", "train_images": 200, "val_images": 100,
            "target": "jetson-orin", "stages": {s["name"]: s["seconds"] for s in result.report["stages"]},
            "wall_seconds": round(wall, 1), "params": result.report["summary"]["params"],
            "macs": result.report["summary"]["macs"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["streaming", "loop", "compress_224"], action="append")
    parser.add_argument("--work", type=Path, default=Path("/tmp/edgekd-scale"))
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epoch-child")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.epoch_child:
        return epoch_child(args.epoch_child, args.workers)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() and args.only else {}
    only = set(args.only or ["streaming", "loop", "compress_224"])
    if "streaming" in only:
        results["streaming"] = streaming(args.work)
        print(json.dumps(results["streaming"], indent=1), flush=True)
    if "loop" in only:
        loop = results.get("loop", {})
        loop["cpu"] = loop_cpu(args.batches, args.batch_size, args.rounds)
        loop["gpu"] = None  # no CUDA GPU on this machine: not measured
        results["loop"] = loop
        print(json.dumps(results["loop"], indent=1), flush=True)
    if "compress_224" in only:
        results["compress_224"] = compress_224(args.work)
        print(json.dumps(results["compress_224"], indent=1), flush=True)
    results["machine"] = {"cpu_cores": len(os.sched_getaffinity(0)), "load_average": os.getloadavg(),
                          "cuda": torch.cuda.is_available(), **library_versions()}
    write_json(RESULTS, results)


if __name__ == "__main__":
    main()
