"""The 224-px ImageFolder recipe end to end, small: a generated JPEG folder streamed from disk,
one epoch per stage, a 32-px input-size override; teacher → KD into MobileNetV3 → prune → int8 → export."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

import edgekd
from edgekd.recipe import load_recipe


def write_jpegs(root, *, classes=4, train=38, val=2, size=(40, 48)):  # 34 train + 4 selection per class
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("val", val)):
        for label in range(classes):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 80, (*size, 3)) + np.array([50 * label, 160 - 40 * label, 90])
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{i}.jpg", quality=90)
    return root


def small_version(recipe, folder):
    """The recipe as shipped, on ``folder`` at 32 px, one epoch per training."""
    data = recipe.data.model_copy(update={"source": str(folder), "image_size": (32, 32), "storage": "stream"})
    one = {"epochs": 1, "batch_size": 68}
    teacher, distill, prune, quantize = (next(s for s in recipe.stages if s.stage == name)
                                         for name in ("teacher", "distill", "prune", "quantize"))
    recovery = prune.recovery.model_copy(update={"train": prune.recovery.train.model_copy(update=one)})
    return (recipe.model_copy(update={"data": data})
            .with_stage("teacher", train=teacher.train.model_copy(update=one))
            .with_stage("distill", train=distill.train.model_copy(update=one))
            .with_stage("prune", recovery=recovery, sparsity_2_4=False, report_batches=(1,), latency_batch=1)
            .with_stage("quantize", method="ptq", max_accuracy_drop=100.0, calibration_images=32,
                        qat=quantize.qat, accuracy_control=False, report_batches=(1,))
            .with_stage("benchmark", batch_sizes=(1,)))


@pytest.fixture
def one_thread():
    """PyTorch on one thread: on a 2-core machine shared with other jobs, two threads spin-wait on each
    other through the many small ops of 32-px MobileNetV3 and ResNet-50 (measured 3-5x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_imagefolder_224_recipe_runs_end_to_end_for_jetson(tmp_path, one_thread):
    folder = write_jpegs(tmp_path / "photos")
    recipe = load_recipe("imagefolder-224")
    assert recipe.data.image_size == (224, 224) and recipe.data.channels == 3
    result = edgekd.compress(train=None, target="jetson-orin", recipe=small_version(recipe, folder),
                             out=tmp_path / "run", progress=False, device="auto")
    stages = [s["name"] for s in result.report["stages"]]
    assert stages == ["teacher", "distill", "prune", "quantize", "export", "benchmark"]
    model = onnx.load(result.onnx_path)
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][1:] == [3, 32, 32]
    assert any(node.op_type == "QuantizeLinear" for node in model.graph.node)
    spec = json.loads((result.deploy_dir / "preprocessing.json").read_text())
    assert spec["mean"] == [0.485, 0.456, 0.406] and spec["resize"]["crop"] == [32, 32]
    assert (result.deploy_dir / "build_engine.sh").exists()
    assert 0.0 <= result.accuracy <= 1.0
