#!/usr/bin/env python3
"""Run the model in this folder on images (written by edgekd into RUN/deploy/).

    python infer.py IMAGE [IMAGE ...]      one line per image

What a line says follows the model's outputs: a classifier's (N, classes) scores give the file, the class
and its probability; a segmenter's (N, classes, H, W) scores give the file, a mask PNG (each pixel's class
index, written to masks/ beside this script's working directory) and the classes present; any other
outputs (a detector's heads, several named outputs) give the file and every output's values as JSON, to
post-process as your model defines them.

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
    names = SPEC.get("output_names") or [SPEC["output_name"]]
    outputs = session().run(names, {SPEC["input_name"]: batch})
    if len(outputs) == 1 and outputs[0].ndim == 2:
        classify(paths, outputs[0])
    elif len(outputs) == 1 and outputs[0].ndim == 4:
        segment(paths, outputs[0])
    else:
        for i, path in enumerate(paths):
            values = {name: np.round(out[i].astype(np.float64), 5).tolist() for name, out in zip(names, outputs)}
            print(f"{path}\t{json.dumps(values)}")
    return 0


def class_name(index: int) -> str:
    classes = SPEC.get("classes") or []
    return classes[index] if index < len(classes) else str(index)


def classify(paths: list[str], logits: np.ndarray) -> None:
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    for path, row in zip(paths, probabilities):
        best = int(row.argmax())
        print(f"{path}\t{class_name(best)}\t{row[best]:.3f}")


def segment(paths: list[str], scores: np.ndarray) -> None:
    folder = Path("masks")
    folder.mkdir(exist_ok=True)
    for i, (path, image_scores) in enumerate(zip(paths, scores)):
        mask = image_scores.argmax(0).astype(np.uint8)
        written = folder / f"{i:04d}-{Path(path).stem}.png"
        Image.fromarray(mask).save(written)
        present = ", ".join(class_name(int(c)) for c in np.unique(mask))
        print(f"{path}\t{written}\t{present}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
