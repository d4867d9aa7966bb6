import pytest
from torch import nn

from edgekd.context import RunContext
from edgekd.data import DataSpec, load_data
from edgekd.errors import ExportError
from edgekd.models.loading import build_model
from edgekd.runtime.onnxruntime import evaluate, measure_latency
from edgekd.stages.export import ExportStage
from edgekd.targets import load_target


@pytest.fixture(scope="module")
def data():
    return load_data(DataSpec(train_subset=100, val_subset=600))


def make_ctx(tmp_path, data):
    ctx = RunContext(out_dir=tmp_path, target=load_target("host"), data=data, cache_dir=tmp_path / "cache")
    ctx.begin_stage(tmp_path / "stage")
    return ctx


@pytest.mark.parametrize("name", ["cnn-tiny", "resnet8", "mobilenetv2-0.35"])
def test_export_matches_pytorch_on_real_images(name, tmp_path, data):
    model = build_model(name, data.info).eval()
    ctx = make_ctx(tmp_path, data)
    ExportStage().apply(model, ctx)
    parity = ctx.details["parity"]
    assert ctx.onnx_path == tmp_path / "model.onnx" and ctx.onnx_path.exists()
    assert parity["max_abs_diff"] <= 1e-4 and parity["top1_agreement"] >= 0.999 and parity["images"] == 600
    assert ctx.accuracy == pytest.approx(evaluate(ctx.onnx_path, ctx.val_loader), abs=1e-9)


def test_exported_model_has_a_dynamic_batch(tmp_path, data):
    ctx = make_ctx(tmp_path, data)
    ExportStage().apply(build_model("cnn-tiny", data.info), ctx)
    for batch in (1, 5):
        stats = measure_latency(ctx.onnx_path, ctx.input_shape, batch, runs=200, warmup=2)
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
        ExportStage().apply(model, ctx)
    assert (tmp_path / "model.onnx").read_bytes() == b"previous run"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
