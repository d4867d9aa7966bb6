#!/usr/bin/env python3
"""Classify images with the model in this folder (written by edgekd into RUN/deploy/).

    python infer.py IMAGE [IMAGE ...]      one line per image: file, class, probability

Needs numpy, pillow and onnxruntime (onnxruntime-gpu on a Jetson, where the TensorRT and CUDA
execution providers are used when present). Preprocessing follows preprocessing.json exactly.
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

HERE = Path(__file__).resolve().parent
SPEC = json.loads((HERE / "preprocessing.json").read_text())


def load(path: str) -> np.ndarray:
    """One image as the model's input row: resized (or resized and center-cropped, as the model was
    validated), (pixel * scale - mean) / std, channels first."""
    channels, height, width = SPEC["input_shape"][1:]
    image = Image.open(path).convert("L" if channels == 1 else "RGB")
    resize = SPEC.get("resize")
    if resize:  # shorter side to resize["shorter_side"], then the central crop, read in one resampling
        factor = min(image.size) / resize["shorter_side"]
        crop_w, crop_h = min(image.width, width * factor), min(image.height, height * factor)
        left, top = (image.width - crop_w) / 2, (image.height - crop_h) / 2
        image = image.resize((width, height), Image.BILINEAR, box=(left, top, left + crop_w, top + crop_h))
    else:
        image = image.resize((width, height))
    pixels = np.asarray(image, dtype=np.float32).reshape(height, width, channels).transpose(2, 0, 1)
    mean = np.array(SPEC["mean"], np.float32).reshape(-1, 1, 1)
    std = np.array(SPEC["std"], np.float32).reshape(-1, 1, 1)
    return (pixels * SPEC["scale"] - mean) / std


def session() -> ort.InferenceSession:
    available = ort.get_available_providers()
    providers = [p for p in SPEC["providers"] if p in available] or ["CPUExecutionProvider"]
    options = ort.SessionOptions()
    if SPEC.get("threads"):
        options.intra_op_num_threads = SPEC["threads"]
    return ort.InferenceSession(str(HERE / "model.onnx"), options, providers=providers)


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    if not SPEC.get("known", True):
        print(f"preprocessing.json: {SPEC['note']}", file=sys.stderr)
        return 2
    batch = np.stack([load(p) for p in paths])
    logits = session().run([SPEC["output_name"]], {SPEC["input_name"]: batch})[0]
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    classes = SPEC.get("classes") or []
    for path, row in zip(paths, probabilities):
        best = int(row.argmax())
        name = classes[best] if best < len(classes) else str(best)
        print(f"{path}\t{name}\t{row[best]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
