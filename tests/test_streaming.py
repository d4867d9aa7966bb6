"""Image folders streamed from disk: per-item decoding in workers, standard transforms, exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.data import DataSpec, ImageFiles, Storage, TensorImages, assign_roles, load_data, load_source, make_loader
from edgekd.data.loader import Augment, set_epoch
from edgekd.data.streaming import default_workers
from edgekd.data.transforms import CropSettings, center_box, random_resized_box
from edgekd.errors import DataError
from edgekd.train import CrossEntropy, TrainConfig, fit


def write_folder(root, *, per_class=4, classes=("cat", "dog", "eel"), size=(40, 48), val=2):
    """A small ImageFolder of JPEGs and PNGs whose class is visible (a colour per class) under noise."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("val", val)):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 60, (*size, 3)) + np.array([60 * label, 200 - 60 * label, 100])
                image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
                image.save(folder / (f"{i}.jpg" if i % 2 == 0 else f"{i}.png"))
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("images"))


def test_stream_storage_keeps_file_names_not_pixels(folder):
    bundle = load_data(DataSpec(source=str(folder), image_size=(32, 32), storage=Storage.STREAM, workers=0))
    assert isinstance(bundle.train, ImageFiles) and len(bundle.train) + len(bundle.selection) == 12
    assert isinstance(bundle.selection, ImageFiles) and len(bundle.report) == 6
    assert not hasattr(bundle.train, "images")
    assert bundle.info.classes == ("cat", "dog", "eel") and bundle.info.image_size == (32, 32)
    assert bundle.info.mean == (0.485, 0.456, 0.406)  # what pretrained 224-px weights expect
    image, label = bundle.report.unsealed()[5]
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32) and label == 2
    spec = bundle.info.preprocessing()
    assert spec["resize"] == {"method": "shorter-side-then-center-crop", "shorter_side": pytest.approx(36.5714, abs=1e-4), "crop": [32, 32],
                              "interpolation": "bilinear"}


def test_auto_storage_streams_only_over_the_memory_budget(folder):
    small = load_data(DataSpec(source=str(folder), image_size=(32, 32)))
    assert isinstance(small.train, TensorImages)
    large = load_data(DataSpec(source=str(folder), image_size=(32, 32), memory_budget_mb=0.01))
    assert isinstance(large.train, ImageFiles)


def test_eval_items_are_centered_and_deterministic(folder):
    files = load_data(DataSpec(source=str(folder), image_size=(16, 16), storage="stream")).train
    first, again = files[0][0], files[0][0]
    assert torch.equal(first, again)
    assert center_box(48, 40, (16, 16)) == pytest.approx((6.5, 2.5, 41.5, 37.5))  # 87.5% of the shorter side


def test_random_resized_boxes_stay_inside_and_within_the_ranges():
    rng = np.random.default_rng(1)
    settings = CropSettings()
    for _ in range(200):
        left, top, right, bottom = random_resized_box(200, 100, rng, settings)
        assert 0 <= left < right <= 200 and 0 <= top < bottom <= 100
        assert (right - left) * (bottom - top) >= 0.07 * 200 * 100


def test_augmentation_is_seeded_per_epoch_and_independent_of_workers(folder):
    bundle = load_data(DataSpec(source=str(folder), image_size=(24, 24), storage="stream", workers=0))

    def epoch_batches(workers, epoch):
        bundle.train.workers = workers
        loader = make_loader(bundle.train, bundle.info, batch_size=5, train=True, augment=Augment(), seed=3)
        set_epoch(loader, 3, epoch)
        return [batch for batch in loader]

    inline, in_workers = epoch_batches(0, 1), epoch_batches(2, 1)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(inline, in_workers))
    other_epoch = epoch_batches(0, 2)
    assert not torch.equal(inline[0][0], other_epoch[0][0])
    assert inline[0][0].dtype == torch.float32 and inline[0][0].shape == (5, 3, 24, 24)


def test_training_on_streamed_jpegs_learns_and_resumes_exactly(folder, tmp_path):
    sources = load_source(DataSpec(source=str(folder), image_size=(24, 24), storage="stream", workers=1))
    bundle = assign_roles(sources._replace(test=sources.val))  # all 12 train; scored on the 6 val images
    config = TrainConfig(epochs=3, batch_size=4, lr=0.05, schedule="cosine")
    from edgekd.models import create_model

    def model():
        torch.manual_seed(0)
        return create_model("cnn-tiny", in_channels=3, num_classes=3, input_size=(24, 24))

    whole = model()
    result = fit(whole, bundle, config, progress=False)
    assert result.accuracy >= 0.8  # the classes differ by colour: 3 epochs find it
    with pytest.raises(KeyboardInterrupt):  # killed in the middle of epoch 2 (3 batches per epoch)
        fit(model(), bundle, config, objective=KilledAt(5), checkpoint=tmp_path / "t.pt", progress=False)
    resumed = model()
    fit(resumed, bundle, config, checkpoint=tmp_path / "t.pt", progress=False)
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


class KilledAt(CrossEntropy):
    def __init__(self, step: int):
        super().__init__()
        self.step, self.calls = step, 0

    def forward(self, model, images, labels):
        self.calls += 1
        if self.calls >= self.step:
            raise KeyboardInterrupt
        return super().forward(model, images, labels)


def test_subset_and_fingerprint_do_not_decode(folder, monkeypatch):
    bundle = load_data(DataSpec(source=str(folder), image_size=(16, 16), storage="stream", train_subset=5))
    assert len(bundle.train) == 4 and len(bundle.selection) == 1
    monkeypatch.setattr(ImageFiles, "__getitem__", lambda *a: pytest.fail("decoded an image"))
    assert len(bundle.fingerprint()) == 16


def test_unreadable_streamed_image_is_named(tmp_path):
    write_folder(tmp_path, per_class=1, classes=("a",), val=1)
    (tmp_path / "train" / "a" / "9.jpg").write_bytes(b"not a jpeg")
    bundle = load_data(DataSpec(source=str(tmp_path), image_size=(8, 8), storage="stream", workers=0))
    with pytest.raises(DataError, match="9.jpg"):  # in the training or the selection split
        for part in (bundle.train, bundle.selection):
            next(iter(make_loader(part, bundle.info, batch_size=4, train=False)))


def test_default_workers_leave_a_core_for_training(monkeypatch):
    monkeypatch.setattr("edgekd.data.streaming.available_cores", lambda: 16)
    assert default_workers() == 8 and default_workers(processes_per_machine=4) == 3
    monkeypatch.setattr("edgekd.data.streaming.available_cores", lambda: 2)
    assert default_workers() == 1


class Decodes(torch.utils.data.Dataset):
    """A large dataset whose items count how often they are decoded; ``targets`` when ``declared``."""

    decoded = 0

    def __init__(self, n: int, declared: bool):
        self.n = n
        if declared:
            self.targets = [i % 7 for i in range(n)]

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        Decodes.decoded += 1
        return torch.zeros(3, 8, 8, dtype=torch.uint8), i % 7


def declared_factory():
    return Decodes(5000, True), Decodes(5000, True)


def undeclared_factory():
    return Decodes(5000, False), Decodes(5000, False)


def test_factory_class_count_does_not_decode_the_validation_set():
    Decodes.decoded = 0
    bundle = load_data(DataSpec(source="test_streaming:declared_factory"))
    assert bundle.info.num_classes == 7 and Decodes.decoded <= 1  # the first training item, for its shape
    with pytest.raises(DataError, match="'targets'"):
        load_data(DataSpec(source="test_streaming:undeclared_factory"))
    assert Decodes.decoded <= 2


def test_deploy_infer_preprocesses_as_the_model_was_validated(folder, tmp_path):
    """deploy/infer.py, fed preprocessing.json, gives the model the input validation gave it (PNG: no JPEG draft)."""
    import importlib.util
    import json
    import shutil

    from edgekd.deploy import INFER_TEMPLATE

    bundle = load_data(DataSpec(source=str(folder), image_size=(20, 20), storage="stream", workers=0))
    (tmp_path / "preprocessing.json").write_text(json.dumps(bundle.info.preprocessing()))
    shutil.copy(INFER_TEMPLATE, tmp_path / "infer.py")
    spec = importlib.util.spec_from_file_location("deployed_infer", tmp_path / "infer.py")
    infer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(infer)
    files = bundle.report.unsealed()
    index = next(i for i, p in enumerate(files.paths) if p.endswith(".png"))
    images, _ = next(iter(make_loader(torch.utils.data.Subset(files, [index]), bundle.info, batch_size=1,
                                      train=False)))
    assert np.allclose(infer.load(files.paths[index]), images[0].numpy(), atol=1e-5)
