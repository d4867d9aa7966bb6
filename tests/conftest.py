import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from edgekd.data import load_fashion_mnist, make_loader
from edgekd.train import CrossEntropy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).parent))  # so `user_code` imports as a user's module


# Never read or write the user's ~/.cache/edgekd: one throwaway cache for the whole session, set before any
# fixture runs (module-scoped fixtures start CLI subprocesses that inherit it). Under pytest-xdist the workers
# share one, named after the controller (their parent process), so a teacher that several files train with the
# same settings and data is trained once (cache files are written by rename: a worker reads a whole file or
# none); the controller removes it when the session ends.
def shared_cache(controller: int) -> Path:
    return Path(tempfile.gettempdir()) / f"edgekd-test-cache-{controller}"


if "PYTEST_XDIST_WORKER" in os.environ:
    shared_cache(os.getppid()).mkdir(exist_ok=True)
    os.environ["EDGEKD_CACHE"] = str(shared_cache(os.getppid()))
else:
    os.environ["EDGEKD_CACHE"] = tempfile.mkdtemp(prefix="edgekd-test-cache-")


def pytest_configure(config):
    """Under pytest-xdist (``make test`` runs one worker per core), pin each worker and what it starts (CLI
    subprocesses, ONNX Runtime sessions: the host profile reads the affinity) to its own cores, so two workers
    never share a core: each test then sees a quiet machine of fewer cores rather than an oversubscribed one."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker or count < 2 or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= count:
        mine = set(cores[int(worker.removeprefix("gw")) % count::count])
        os.sched_setaffinity(0, mine)
        import torch

        torch.set_num_threads(len(mine))


def pytest_sessionfinish(session):
    if "PYTEST_XDIST_WORKER" not in os.environ:  # the controller, once every worker is done
        shutil.rmtree(shared_cache(os.getpid()), ignore_errors=True)


# The longest files (minutes each on one core, from `--durations`), handed out first: pytest-xdist's
# --dist loadfile gives each worker whole files in collection order, and a long file dealt last would run
# alone while the other worker idles. The rest follow in their usual order.
LONGEST_FIRST = ("test_cli.py", "test_quantize.py", "test_distributed.py", "test_prune.py", "test_search.py",
                 "test_distill_stage.py", "test_resume.py", "test_tasks.py", "test_factorize.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def fashion():
    return load_fashion_mnist()


# The head of a recipe for end-to-end tests of a compression stage: a small teacher and a KD
# student, one epoch each on a subset. Append the stage under test and an export.
DISTILLED_ON_A_SUBSET = """data: {source: fashion-mnist, train_subset: 3000, selection: 1000, val_subset: 1000}
stages:
  - stage: teacher
    model: cnn-small
    train: {epochs: 1, lr: 0.05}
  - stage: distill
    student: cnn-small
    train: {epochs: 1, lr: 0.05, augment: null}
"""


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the installed `edgekd` command as a user would."""
    path = os.pathsep.join(p for p in (str(Path(__file__).parent), os.environ.get("PYTHONPATH")) if p)
    full_env = {**os.environ, "PYTHONPATH": path, **(env or {})}
    exe = Path(sys.executable).parent / "edgekd"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=600)


def stage_ctx(tmp_path: Path, data, target: str = "host"):
    """A run context for calling one stage's ``apply`` directly, with its folder made."""
    from edgekd.context import RunContext
    from edgekd.targets import load_target

    ctx = RunContext(out_dir=tmp_path, target=load_target(target), data=data, cache_dir=tmp_path / "cache",
                     progress=False, stage_dir=tmp_path / "stage")
    ctx.stage_dir.mkdir(parents=True, exist_ok=True)
    return ctx


def run_stage(stage, ctx, model=None, **handoff):
    """Apply one stage to ``model`` (plus any other handoff fields) as the pipeline would: (handoff, row)."""
    from edgekd.stages.base import Handoff, ReportRow

    row = ReportRow()
    given = Handoff(model=model, teacher=handoff.pop("teacher", model), **handoff)
    return stage.apply(given, ctx, row), row


def report_loader(data):
    """The report split of ``data``: what a test grades a finished result on (stages never read it)."""
    return make_loader(data.report.unsealed(), data.info, batch_size=256, train=False)


class FailsAt(CrossEntropy):
    """Cross-entropy that misbehaves from the ``step``-th training step on."""

    def __init__(self, step: int, how: str):
        super().__init__()
        self.step, self.how, self.calls = step, how, 0

    def forward(self, model, images, labels):
        self.calls += 1
        loss, logits = super().forward(model, images, labels)
        if self.calls >= self.step:
            if self.how == "kill":
                raise KeyboardInterrupt
            loss = loss * float("nan")
        return loss, logits
