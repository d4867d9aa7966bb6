import pytest
import torch
from safetensors.torch import save_file

from edgekd.data import DataInfo
from edgekd.errors import CheckpointError, UnknownNameError
from edgekd.models import MODELS, create_model, list_models, model_blocks, model_task
from edgekd.models.loading import build_model, load_weights

GRAY28 = DataInfo("gray", 10, 1, (28, 28), (0.5,), (0.5,))


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("channels,size,classes", [(1, (28, 28), 10), (3, (32, 32), 7)])
def test_every_zoo_model_builds_runs_and_names_its_blocks(name, channels, size, classes):
    model = create_model(name, in_channels=channels, num_classes=classes, input_size=size).eval()
    expected = {"classification": (2, classes), "segmentation": (2, classes, *size)}[model_task(model)]
    with torch.inference_mode():
        assert model(torch.randn(2, channels, *size)).shape == expected
    modules = dict(model.named_modules())
    assert model_blocks(model) and all(block in modules for block in model_blocks(model))


def test_resnet_depths_and_widths():
    def params(name):
        return sum(p.numel() for p in create_model(name).parameters())

    assert params("resnet8") < params("resnet20") < params("resnet56")
    assert 0.25e6 < params("resnet20") < 0.3e6  # He et al.: 0.27M
    assert 0.8e6 < params("resnet56") < 0.9e6  # He et al.: 0.85M
    assert params("resnet8x4") > 4 * params("resnet8")


def test_list_models_filters():
    assert list_models("resnet*x4") == ["resnet14x4", "resnet20x4", "resnet32x4", "resnet8x4"]


def test_unknown_model_suggests_the_closest():
    with pytest.raises(UnknownNameError, match="Did you mean 'resnet20'"):
        create_model("resnet-20")


def test_user_model_by_import_path_gets_data_shape():
    model = build_model("user_code:tiny_net", DataInfo("x", 4, 1, (16, 16), (0.5,), (0.5,)))
    assert model(torch.randn(1, 1, 16, 16)).shape == (1, 4)


def test_safetensors_and_state_dict_round_trip(tmp_path):
    source = build_model("cnn-tiny", GRAY28)
    save_file(source.state_dict(), tmp_path / "w.safetensors")
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "w.pt")
    for file in ("w.safetensors", "w.pt"):
        target = load_weights(build_model("cnn-tiny", GRAY28), tmp_path / file)
        assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))


def test_checkpoint_of_another_model_names_the_keys(tmp_path):
    torch.save(build_model("resnet8", GRAY28).state_dict(), tmp_path / "r8.pt")
    with pytest.raises(CheckpointError, match=r"does not fit the model PlainCNN: missing \d+ keys \(block1"):
        load_weights(build_model("cnn-tiny", GRAY28), tmp_path / "r8.pt")


def test_checkpoint_with_other_class_count_names_the_shape(tmp_path):
    torch.save(build_model("cnn-tiny", DataInfo("x", 5, 1, (28, 28), (0.5,), (0.5,))).state_dict(), tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=r"2 shapes differ \(e.g. classifier.1.bias: file \(5,\), model \(10,\)\)"):
        load_weights(build_model("cnn-tiny", GRAY28), tmp_path / "c.pt")


class Opaque:
    pass


def test_checkpoint_needing_unpickling_is_refused_unless_trusted(tmp_path):
    model = build_model("cnn-tiny", GRAY28)
    path = tmp_path / "pickled.pt"
    torch.save({"state_dict": model.state_dict(), "extra": Opaque()}, path)
    with pytest.raises(CheckpointError, match="full unpickling.*--trust-checkpoint"):
        load_weights(build_model("cnn-tiny", GRAY28), path)
    loaded = load_weights(build_model("cnn-tiny", GRAY28), path, trust=True).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())  # the file's weights, not fresh ones


def test_corrupt_checkpoint_is_reported(tmp_path):
    good, path = tmp_path / "good.pt", tmp_path / "broken.pt"
    torch.save(build_model("cnn-tiny", GRAY28).state_dict(), good)
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # a download cut short
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_weights(build_model("cnn-tiny", GRAY28), path)


@pytest.mark.parametrize("name,params,gmacs", [("resnet18-imagenet", 11_689_512, 1.814), ("resnet50-imagenet", 25_557_032, 4.089),
                                               ("mobilenetv2-imagenet", 3_504_872, 0.301),
                                               ("mobilenetv3-small", 2_542_856, 0.0565), ("mobilenetv3-large", 5_483_032, 0.2166)])
def test_imagenet_models_match_the_published_architectures(name, params, gmacs):
    from edgekd.models.tracing import trace_layers

    model = create_model(name, num_classes=1000, input_size=(224, 224))
    assert sum(p.numel() for p in model.parameters()) == params  # torchvision's counts, exactly
    macs = sum(layer.macs for layer in trace_layers(model, torch.randn(1, 3, 224, 224)))
    assert macs / 1e9 == pytest.approx(gmacs, rel=1e-3)
