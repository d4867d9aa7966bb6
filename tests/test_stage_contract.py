"""Every registered stage keeps its contract: ``restore`` rebuilds exactly what ``apply`` handed on."""

import hashlib

import pytest
import torch

from conftest import stage_ctx
from edgekd.data import DataSpec, load_data
from edgekd.stages import STAGES
from edgekd.stages.base import Handoff, ReportRow

NO_TRAINING = {"epochs": 0}
SETTINGS = {  # the cheapest real run of each stage; a new stage must be added here
    "teacher": {"model": "cnn-tiny", "train": {"epochs": 1, "lr": 0.05}, "cache": False},
    "distill": {"student": "cnn-tiny", "train": {"epochs": 1, "lr": 0.05}},
    "prune": {"metric": "channels", "reduction": 0.25, "round_to": 4, "latency_check": False, "recovery": {"train": NO_TRAINING},
              "sparsity_2_4": True, "sparse_recovery_epochs": 0},
    "factorize": {"selection": "uniform", "reduction": 0.2, "round_to": 2, "recovery": {"train": NO_TRAINING}},
    "quantize": {"method": "ptq", "calibration_images": 64, "score_images": 100, "accuracy_control": False,
                 "max_accuracy_drop": 100},
    "export": {"min_int8_agreement": 0.5},  # a one-epoch model: this test is about restore, not int8 accuracy
    "benchmark": {"batch_sizes": [1], "runs": 200, "warmup": 1},
}
ORDER = ["teacher", "distill", "prune", "factorize", "quantize", "export", "benchmark"]


def test_every_registered_stage_is_in_the_contract():
    assert set(SETTINGS) == set(STAGES) == set(ORDER)


def file_digest(artifact):
    return None if artifact is None else (artifact.path, hashlib.sha256(artifact.path.read_bytes()).hexdigest())


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Each stage applied in order on real data; per stage: (its input, its output, its context)."""
    data = load_data(DataSpec(train_subset=900, selection=300, val_subset=300))
    root = tmp_path_factory.mktemp("contract")
    given, steps = Handoff(), {}
    for name in ORDER:
        ctx = stage_ctx(root / name, data, "jetson-orin" if name in ("prune", "quantize") else "host")
        ctx.out_dir = root  # export writes OUT/model.onnx, benchmark reads it
        stage = STAGES[name](**SETTINGS[name])
        out = stage.apply(given, ctx, ReportRow())
        steps[name] = (stage, given, out, ctx)
        given = out
    return steps


@pytest.mark.parametrize("name", ORDER)
def test_restore_gives_what_apply_gave(name, chain):
    stage, given, applied, ctx = chain[name]
    restored = stage.restore(given, ctx)
    images = torch.randn(4, *ctx.input_shape)
    assert (restored.model is None) == (applied.model is None)
    with torch.inference_mode():
        # equal up to float rounding: a later stage may have put the shared teacher in channels-last
        torch.testing.assert_close(restored.model.eval()(images), applied.model.eval()(images), rtol=1e-5, atol=1e-6)
    assert restored.model_spec == applied.model_spec and restored.sparse_layers == applied.sparse_layers
    assert file_digest(restored.int8) == file_digest(applied.int8)
    assert file_digest(restored.onnx) == file_digest(applied.onnx)
    if applied.int8 is not None:
        assert restored.int8.settings == applied.int8.settings


def test_a_new_model_drops_the_artifacts_of_the_old_one(chain):
    _, _, pruned, _ = chain["prune"]
    _, _, factorized, _ = chain["factorize"]
    _, _, quantized, _ = chain["quantize"]
    assert pruned.sparse_layers and factorized.sparse_layers == ()  # new layers are not the 2:4 ones
    assert quantized.int8 is not None and quantized.with_model(quantized.model).int8 is None
    assert quantized.teacher is chain["teacher"][2].model  # the original teacher travels the whole chain
