"""Run a recipe's stages in order, record each one, checkpoint after each, resume a stopped run.

Each stage's work is :func:`edgekd.plan.build_stage`, the step the budget search builds its candidates with;
this module adds what a run keeps: report rows, the manifest, checkpoints and resume.

The run folder::

    OUT/model.onnx               the exported model (once an export stage ran)
    OUT/report.json, report.md   one row per stage (params, MACs, size, accuracy, latency)
    OUT/manifest.json            per stage: settings hash, output hashes, times, versions
    OUT/stages/NN-NAME/          each stage's own outputs and training checkpoints

With ``resume``, a stage whose settings hash and output hashes still match the manifest is
not run again; the first one that does not match, and every stage after it, is.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from torch import nn

from edgekd import console, measure
from edgekd.atomic import write_json, write_text
from edgekd.context import RunContext
from edgekd.data import DataBundle, load_data, make_loader
from edgekd.distill.cache import model_hash
from edgekd.errors import OutputError
from edgekd.recipe import Recipe
from edgekd.records import StageRecord
from edgekd.report import build_report, write_report
from edgekd.stages import Stage
from edgekd.plan import build_stage, stage_folder
from edgekd.stages.base import Handoff, ReportRow
from edgekd.targets import TargetProfile
from edgekd.judge import judge
from edgekd.metrics import Metric, resolve_metric
from edgekd.supervised import as_supervised
from edgekd.versions import library_versions

MANIFEST = "manifest.json"


def run_pipeline(recipe: Recipe, target: TargetProfile, out_dir: Path, *, data: DataBundle | None = None,
                 user_model: nn.Module | None = None, resume: bool = False, overwrite: bool = False,
                 cache_dir: Path, trust_checkpoint: bool = False, progress: bool = True,
                 report: bool = True, metric: str | Metric | Callable | None = None,
                 loss: Callable | None = None) -> RunResult:
    """Run every stage of ``recipe`` for ``target`` into ``out_dir``; return the report and the last handoff.

    ``data`` replaces the recipe's data spec (the user's own datasets); ``user_model`` is the
    ``nn.Module`` a teacher stage without a model name starts from. Stages choose on the selection
    split; once the last one has finished, every stage's result is scored on the report split
    (:func:`score_on_report_split`). ``report=False`` (a run whose result is itself a candidate, as in
    the budget search) reads no report split and writes no report. ``metric`` (default top-1) scores every
    choice and the report; ``loss(outputs, targets)`` replaces cross-entropy in every training.
    """
    out_dir = Path(out_dir)
    data = data if data is not None else load_data(recipe.data)
    manifest = open_run_folder(out_dir, resume=resume, overwrite=overwrite)
    write_json(out_dir / MANIFEST, manifest)  # an overwritten run's manifest is gone from here on
    ctx = RunContext(out_dir=out_dir, target=target, data=data, cache_dir=cache_dir,
                     trust_checkpoint=trust_checkpoint, progress=progress, user_model=user_model,
                     metric=resolve_metric(metric), loss=as_supervised(loss))
    inputs_key = run_inputs_key(ctx)
    records: list[StageRecord] = []
    handoffs: list[Handoff] = []
    handoff = Handoff()
    reusable, ran = resume, False
    for index, stage in enumerate(recipe.stages):
        stage_dir = stage_folder(out_dir, index, stage)
        ctx.stage_dir = stage_dir
        entry = manifest["stages"][index] if index < len(manifest["stages"]) else None
        key = stage_key(stage, inputs_key, target)
        reusable = reusable and is_finished(entry, key, stage.stage, out_dir)
        # An interrupted stage keeps its epoch checkpoints only if everything before it was reused.
        prepare_stage_dir(stage_dir, key, keep_checkpoints=reusable or (resume and entry is None and not ran))
        if reusable:
            console.info(f"[{index + 1}/{len(recipe.stages)}] {stage.stage}: finished earlier, outputs verified; skipped")
            handoff = stage.restore(handoff, ctx)
            handoffs.append(handoff)
            records.append(StageRecord.from_dict(entry["record"]))
            continue
        del manifest["stages"][index:]
        console.info(f"[{index + 1}/{len(recipe.stages)}] {stage.stage}")
        started = now()
        t0 = time.perf_counter()
        previous, ran = handoff, True
        handoff, row = build_stage(stage, handoff, ctx)  # the stage's work, as the budget search builds it
        record = make_record(stage, handoff.model, previous.model, records, row, ctx,
                             seconds=time.perf_counter() - t0)
        records.append(record)
        handoffs.append(handoff)
        inputs = manifest["stages"][-1]["outputs"] if manifest["stages"] else {"data": data.info.name}
        manifest["stages"].append({"index": index, "name": stage.stage, "config_hash": key,
                                   "started": started, "finished": now(), "inputs": inputs,
                                   "outputs": hash_outputs(out_dir, stage_dir, handoff),
                                   "record": record.to_dict()})
        write_json(out_dir / MANIFEST, manifest)
    if not report:
        return RunResult(report={}, handoff=handoff)
    score_on_report_split(records, handoffs, ctx)
    for entry, record in zip(manifest["stages"], records):
        entry["record"] = record.to_dict()
    write_json(out_dir / MANIFEST, manifest)
    built = build_report(recipe, ctx, records, onnx_path=handoff.onnx.path if handoff.onnx else None)
    write_report(out_dir, built)
    return RunResult(report=built, handoff=handoff)


def score_on_report_split(records: list[StageRecord], handoffs: list[Handoff], ctx: RunContext) -> None:
    """Each stage's result on the report split, now that every choice is made: the ONNX model a stage produced
    (int8, or the exported model) in ONNX Runtime, else the PyTorch model; a stage that changed nothing has the
    figure of the stage before it. Resumed stages are scored again: the report split is not part of a stage's
    inputs (no stage reads it), so it may have changed since."""
    loader = make_loader(ctx.data.report.unsealed(), ctx.data.info, batch_size=256, train=False)
    before = Handoff()
    for index, (record, handoff) in enumerate(zip(records, handoffs)):
        artifact = handoff.onnx or handoff.int8
        if index > 0 and handoff.model is before.model and artifact == (before.onnx or before.int8):
            record.accuracy, record.accuracy_source = records[index - 1].accuracy, records[index - 1].accuracy_source
        elif artifact is not None:
            record.accuracy = judge(artifact.path, loader, ctx.metric, threads=ctx.host_threads)
            record.accuracy_source = "onnxruntime"
        elif handoff.model is not None:
            record.accuracy, record.accuracy_source = judge(handoff.model, loader, ctx.metric), "pytorch"
        before = handoff


@dataclass(frozen=True)
class RunResult:
    report: dict
    handoff: Handoff


def open_run_folder(out_dir: Path, *, resume: bool, overwrite: bool) -> dict:
    """Check the folder can be written and holds no other run; return the manifest to continue."""
    path = out_dir / MANIFEST
    if path.exists() and not (resume or overwrite):
        raise OutputError(f"{out_dir} already holds a run; pass --resume to continue it, --overwrite to replace "
                          "it, or choose another --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".edgekd-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write to {out_dir} ({exc.strerror}); choose another --out folder") from None
    if resume and path.exists():
        try:
            manifest = json.loads(path.read_text())
            if isinstance(manifest.get("stages"), list):
                return manifest
        except (ValueError, AttributeError):
            pass
        console.info(f"{path} is unreadable; running every stage again")
    return {"edgekd_manifest": 1, "created": now(), "versions": library_versions(), "stages": []}


def seed_run(source: Path, out_dir: Path, stages: int) -> None:
    """Start ``out_dir`` with the first ``stages`` finished stages of the run in ``source``.

    A run that begins with the same stages (same settings, data and target) then reuses them on
    ``resume`` instead of training them again: the budget search seeds its final run with the
    teacher and student it already trained. The outputs are verified by hash as for any resume.
    """
    manifest = json.loads((source / MANIFEST).read_text())
    manifest["stages"] = manifest["stages"][:stages]
    for entry in manifest["stages"]:
        folder = f"{entry['index']:02d}-{entry['name']}"
        shutil.copytree(source / "stages" / folder, out_dir / "stages" / folder, dirs_exist_ok=True)
    write_json(out_dir / MANIFEST, manifest)


def run_inputs_key(ctx: RunContext) -> str:
    """What every stage's result depends on besides its settings: the data, the user's model, and the metric and loss
    (a user's callable by its code, so a changed function of the same name is noticed)."""
    text = ctx.data.fingerprint() + (model_hash(ctx.user_model) if ctx.user_model is not None else "")
    if ctx.metric.name != "top1" or not ctx.loss.is_default:  # the keys of top-1, cross-entropy runs stay as they were
        text += f"|metric {ctx.metric.fingerprint()}|loss {ctx.loss.fingerprint()}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stage_key(stage: Stage, inputs_key: str, target: TargetProfile) -> str:
    """What a stage's result depends on: its settings, the run's inputs and, for most stages, the target (a teacher
    or a distilled student is the same for every target, so a run for another target can start from them)."""
    text = stage.model_dump_json() + inputs_key + (target.model_dump_json() if stage.uses_target else "")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def prepare_stage_dir(stage_dir: Path, key: str, *, keep_checkpoints: bool) -> None:
    """Empty a stage's folder unless it holds this very stage's work (an interrupted training to resume)."""
    marker = stage_dir / ".key"
    if stage_dir.exists() and not (keep_checkpoints and marker.exists() and marker.read_text() == key):
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    write_text(marker, key)


def is_finished(entry: dict | None, key: str, name: str, out_dir: Path) -> bool:
    if not entry or entry.get("config_hash") != key:
        if entry:
            console.info(f"{name}: settings, data or target changed since the last run; redoing it and every "
                         "stage after it")
        return False
    for rel, digest in entry.get("outputs", {}).items():
        if not (out_dir / rel).is_file() or file_hash(out_dir / rel) != digest:
            console.info(f"{name}: output {rel} is missing or changed; redoing it and every stage after it")
            return False
    return True


def make_record(stage: Stage, model: nn.Module, previous: nn.Module | None, records: list[StageRecord],
                row: ReportRow, ctx: RunContext, *, seconds: float) -> StageRecord:
    """The stage's report row: its selection-split accuracy (what it measured itself, else PyTorch accuracy if
    the model changed); the report split's is scored after the last stage."""
    acc, source, size = row.accuracy, row.accuracy_source, row.size_bytes
    changed = model is not previous or not records
    if acc is None and changed:
        acc, source = ctx.score(model), "pytorch"
    elif acc is None:
        acc, source = records[-1].selection_accuracy, records[-1].accuracy_source
    if size is None:
        size = measure.state_dict_bytes(model) if changed else records[-1].size_bytes
    return StageRecord(name=stage.stage, params=measure.count_params(model),
                       macs=measure.count_macs(model, ctx.input_shape), size_bytes=size,
                       accuracy=None, accuracy_source=source, selection_accuracy=acc, seconds=round(seconds, 2),
                       latency=list(row.latency), details=dict(row.details))


def hash_outputs(out_dir: Path, stage_dir: Path, handoff: Handoff) -> dict[str, str]:
    files = [p for p in stage_dir.iterdir()
             if p.is_file() and not p.name.startswith((".", "train"))]  # not markers, temp files or checkpoints
    if handoff.onnx is not None and handoff.onnx.path.exists() and handoff.onnx.path.is_relative_to(out_dir):
        files.append(handoff.onnx.path)
    return {str(p.relative_to(out_dir)): file_hash(p) for p in sorted(set(files))}


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
