import pytest
from torch import nn

from conftest import run_stage, stage_ctx
from edgekd.data import DataSpec, load_data
from edgekd.errors import ExportError
from edgekd.models.loading import build_model
from edgekd.runtime.onnxruntime import evaluate, measure_latency
from edgekd.stages.export import ExportStage


@pytest.fixture(scope="module")
def data():
    return load_data(DataSpec(train_subset=1300, selection=600, val_subset=600))  # parity on 600 selection images


def make_ctx(tmp_path, data):
    return stage_ctx(tmp_path, data)


@pytest.mark.parametrize("name", ["cnn-tiny", "resnet8", "mobilenetv2-0.35"])
def test_export_matches_pytorch_on_real_images(name, tmp_path, data):
    model = build_model(name, data.info).eval()
    ctx = make_ctx(tmp_path, data)
    out, row = run_stage(ExportStage(), ctx, model)
    parity = row.details["parity"]
    assert out.onnx.path == tmp_path / "model.onnx" and out.onnx.path.exists()
    assert parity["max_abs_diff"] <= 1e-4 and parity["top1_agreement"] >= 0.999 and parity["images"] == 600
    assert row.accuracy == pytest.approx(evaluate(out.onnx.path, ctx.selection_loader), abs=1e-9)
    assert row.details["produced_by"] == {"file": "model.onnx", "stage": "stage",
                                          "settings": {"opset": 17, "simplify": True}}


def test_exported_model_has_a_dynamic_batch(tmp_path, data):
    ctx = make_ctx(tmp_path, data)
    out, _ = run_stage(ExportStage(), ctx, build_model("cnn-tiny", data.info))
    for batch in (1, 5):
        stats = measure_latency(out.onnx.path, ctx.input_shape, batch, runs=200, warmup=2)
        assert stats.runs == 200 and 0 < stats.median_ms <= stats.p90_ms <= stats.p99_ms


class TracedAwayBranch(nn.Module):
    """Data-dependent Python control flow: the tracer records one branch, so ONNX differs."""

    def __init__(self):
        super().__init__()
        self.net = build_model("cnn-tiny", load_data(DataSpec(val_subset=10, train_subset=10)).info)

    def forward(self, x):
        logits = self.net(x)
        if float(x.mean()) > 0:  # true for the zero input used when tracing, false for some images
            return logits
        return -logits


def test_export_that_fails_parity_fails_loudly_and_writes_nothing(tmp_path, data):
    model = TracedAwayBranch().eval()
    ctx = make_ctx(tmp_path, data)
    (tmp_path / "model.onnx").write_bytes(b"previous run")
    with pytest.raises(ExportError, match="does not match PyTorch"):
        run_stage(ExportStage(), ctx, model)
    assert (tmp_path / "model.onnx").read_bytes() == b"previous run"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
