"""The Python API as a user calls it from a notebook: their own nn.Module and DataLoaders in, objects out."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import edgekd
from edgekd.data import DataSpec, load_data, load_fashion_mnist
from edgekd.errors import ConfigError, DataError, EdgekdError
from edgekd.runtime.onnxruntime import evaluate

MEAN, STD = 0.2860, 0.3530  # the user's own normalization (Fashion-MNIST's)


class UserNet(nn.Module):
    """A model the zoo does not know: two conv blocks and a linear head."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Flatten())
        self.head = nn.Linear(32 * 7 * 7, classes)

    def forward(self, x):
        return self.head(self.features(x))


def user_tensors(split_size: int, *, seed: int, val: bool):
    """Fashion-MNIST images as a user's pipeline makes them: float, normalized, in a TensorDataset."""
    source = load_fashion_mnist()
    part = (source.val if val else source.train).subset(split_size, seed=seed)
    return TensorDataset((part.images.float() / 255 - MEAN) / STD, part.labels)


@pytest.fixture(scope="module")
def user_setup():
    torch.manual_seed(0)
    train_loader = DataLoader(user_tensors(6000, seed=0, val=False), batch_size=64, shuffle=True)
    val_loader = DataLoader(user_tensors(1000, seed=0, val=True), batch_size=256)
    model = UserNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(3):  # the user's own training loop
        for images, labels in train_loader:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(images), labels).backward()
            optimizer.step()
    return model.eval(), train_loader, val_loader


def torch_accuracy(model, loader):
    with torch.inference_mode():
        hits = sum(int((model(x).argmax(1) == y).sum()) for x, y in loader)
    return hits / len(loader.dataset)


def test_readme_example_compresses_a_users_module_and_loaders(user_setup, tmp_path):
    model, train_loader, val_loader = user_setup
    teacher_accuracy = torch_accuracy(model, val_loader)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    result = edgekd.compress(model, train_loader, val_loader, target="jetson-orin",
                             stages=[edgekd.Distill(student="cnn-tiny", train={"epochs": 4}),
                                     edgekd.Quantize(calibration_images=256, score_images=500)],
                             out=tmp_path / "run", preprocessing={"mean": [MEAN], "std": [STD]}, progress=False)
    assert result.accuracy == evaluate(result.onnx_path, val_loader)  # the shipped file, judged independently
    # measured here: the user's teacher 0.855, the 18K-parameter int8 student 0.758 (KD, 4 short epochs)
    assert result.accuracy >= 0.73 and teacher_accuracy >= 0.83
    assert result.accuracy >= result.report["stages"][1]["accuracy"] - 0.01  # int8 within its 1-point budget
    assert result.onnx_path == tmp_path / "run" / "model.onnx" and (result.deploy_dir / "model.onnx").is_file()
    assert [s["name"] for s in result.report["stages"]] == ["teacher", "distill", "quantize", "export", "benchmark"]
    assert result.report["stages"][0]["accuracy"] == pytest.approx(teacher_accuracy)  # used as given, untrained
    assert result.report["stages"][3]["details"]["produced_by"]["stage"] == "02-quantize"
    assert result.report["preprocessing"]["mean"] == [MEAN] and result.report["preprocessing"]["known"]
    assert isinstance(result.model, nn.Module) and sum(p.numel() for p in result.model.parameters()) < 20_000
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())  # the user's model untouched


def test_datasets_without_val_hold_out_a_tenth_and_say_preprocessing_is_unknown(user_setup, tmp_path):
    model, train_loader, _ = user_setup
    result = edgekd.compress(model, train_loader.dataset, target="host", stages=[], out=tmp_path / "run",
                             progress=False)
    splits = {role: split["items"] for role, split in result.report["data"]["splits"].items()}
    assert splits == {"train": 4860, "selection": 540, "report": 600}  # report: 10% of 6,000; selection: 10% of the rest
    assert result.report["preprocessing"]["known"] is False
    assert "preprocessing=" in (result.deploy_dir / "preprocessing.json").read_text()
    manifest = (tmp_path / "run" / "manifest.json").read_text()
    again = edgekd.compress(model, train_loader.dataset, target="host", stages=[], out=tmp_path / "run",
                            resume=True, progress=False)  # the same module and data: every stage reused
    assert (tmp_path / "run" / "manifest.json").read_text() == manifest and again.accuracy == result.accuracy
    other = UserNet()  # another module (fresh weights) is another run: not resumed from this one's stages
    changed = edgekd.compress(other, train_loader.dataset, target="host", stages=[], out=tmp_path / "run",
                              resume=True, progress=False)
    assert changed.report["stages"][0]["accuracy"] != result.report["stages"][0]["accuracy"]


@pytest.mark.parametrize(("call", "error", "message"), [
    (dict(model=42), ConfigError, "model must be a torch nn.Module"),
    (dict(train=[1, 2, 3]), DataError, "training must be a torch DataLoader, a Dataset"),
    (dict(stages=["prune"]), ConfigError, "stages must be stage objects"),
    (dict(stages=[edgekd.Benchmark(), edgekd.Export()]), ConfigError, r"stages\[1\] \(benchmark\) needs an exported model"),
    (dict(stages=[], recipe="fast"), ConfigError, "stages or recipe, not both"),
    (dict(train="fashion-mnist", val=[1]), ConfigError, "val and test go with your own training data"),
])
def test_wrong_arguments_get_one_clear_error_before_anything_runs(call, error, message, user_setup, tmp_path):
    model, train_loader, _ = user_setup
    kwargs = {"model": model, "train": train_loader, **call}
    with pytest.raises(error, match=message):
        edgekd.compress(kwargs.pop("model"), kwargs.pop("train"), **kwargs, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_loader_with_its_own_collate_is_refused_with_what_to_do(user_setup, tmp_path):
    model, train_loader, _ = user_setup
    odd = DataLoader(train_loader.dataset, batch_size=8, collate_fn=lambda items: items)
    with pytest.raises(EdgekdError, match="own collate_fn"):
        edgekd.compress(model, odd, out=tmp_path / "run")


def test_a_recipe_that_starts_with_export_is_refused_with_file_and_line(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("stages:\n  - stage: export\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:2: stages\[0\] \(export\) needs a model.*teacher stage"):
        edgekd.compress(recipe=recipe, out=tmp_path / "run")
