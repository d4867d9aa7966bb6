"""The ``edgekd`` command: a thin layer over :mod:`edgekd.api`. It parses, calls, prints; no math."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgekd import console
from edgekd.errors import ConfigError, EdgekdError

app = typer.Typer(help="Compress a trained PyTorch vision model for an edge device, and report how it runs there.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
targets_app = typer.Typer(help="List the target profiles, or show one.", invoke_without_command=True)
app.add_typer(targets_app, name="targets")


def user_errors(command):
    """Print an edgekd error as one line and exit 1; Ctrl-C says how to resume."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except EdgekdError as exc:
            console.error(str(exc))
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            console.error("interrupted; finished stages are kept: run the same command with --resume to continue")
            raise typer.Exit(130) from None

    return wrapper


def lead_or_serve(nproc: int) -> bool:
    """True where this process runs the command: the only process, or torchrun's rank 0.

    With ``--nproc N`` outside torchrun, the command is run again under torchrun and this process
    exits with its status; under torchrun, the other ranks train the leader's trainings, then return False.
    """
    from edgekd import distributed

    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        raise typer.Exit(distributed.launch(nproc, distributed.without_option(sys.argv[1:], "--nproc")))
    if distributed.init_from_env() and not distributed.is_leader():
        from edgekd.train import train_job

        distributed.serve(train_job)
        return False
    return True


DEVICE_HELP = "Where to train and score: auto (CUDA when there is a GPU), cpu, cuda or cuda:N."
NPROC_HELP = ("Training processes on this machine (torchrun; gloo on CPU, NCCL on GPU). "
              "For several machines run torchrun yourself (docs/distributed.md).")


@app.command()
@user_errors
def compress(
    target: Annotated[str, typer.Option(help="Target profile name (see `edgekd targets`) or YAML file.")] = "host",
    recipe: Annotated[str, typer.Option(help="Recipe name (default, fast) or YAML file.")] = "default",
    teacher: Annotated[Optional[str], typer.Option(help="Teacher: zoo model name or package.module:factory.")] = None,
    weights: Annotated[Optional[Path], typer.Option(help="Teacher weights (.safetensors or a state_dict file).")] = None,
    data: Annotated[Optional[str], typer.Option(help="fashion-mnist, a folder (IDX or ImageFolder), or package.module:function.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run folder (default runs/TARGET-RECIPE).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out; finished stages are not redone.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a run already in --out.")] = False,
    trust_checkpoint: Annotated[bool, typer.Option(help="Allow full unpickling of --weights (only for files you trust).")] = False,
    train_teacher: Annotated[bool, typer.Option(
        help="Train the teacher even where edgekd ships weights trained with exactly these settings on this data.")] = False,
    quiet: Annotated[bool, typer.Option(help="Print only errors and the summary.")] = False,
    nproc: Annotated[int, typer.Option(min=1, help=NPROC_HELP)] = 1,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
    max_accuracy_drop: Annotated[Optional[float], typer.Option(
        min=0, help="Search for the fastest model within this many points of the teacher (instead of the recipe's stages).")] = None,
    margin_se: Annotated[float, typer.Option(
        min=0, help="With --max-accuracy-drop: keep this many standard errors of a finalist's drop (paired, on the "
                    "selection split) from the budget's edge.")] = 0.0,
    latency_budget: Annotated[Optional[float], typer.Option(
        min=0, help="Search for the most accurate model within this many ms at --batch on the target.")] = None,
    batch: Annotated[int, typer.Option(min=1, help="The batch size a budget's latency is judged at.")] = 1,
    search_time: Annotated[float, typer.Option(min=1, help="Seconds the budget search may spend scoring candidates.")] = 3600,
    student: Annotated[Optional[list[str]], typer.Option(
        help="With a budget: also search from this student (zoo name or package.module:factory) distilled from "
             "the teacher; repeat for more (default: the recipe's distill student).")] = None,
) -> None:
    """Run a recipe (teacher → ... → export → benchmark) for a target and write the run folder.

    With --max-accuracy-drop or --latency-budget, the stages are searched for instead: the recipe gives the
    teacher and the data, and the pick is written as OUT/search/recipe.yaml.
    """
    from edgekd import device as devices
    from edgekd import distributed
    from edgekd.api import compress as run
    from edgekd.api import prepare_recipe
    from edgekd.search.space import Budget

    console.set_quiet(quiet)
    budget = None
    if max_accuracy_drop is not None or latency_budget is not None:
        budget = Budget(max_accuracy_drop=max_accuracy_drop, latency_ms=latency_budget, batch=batch,
                        seconds=search_time, students=tuple(student) if student else None, margin_se=margin_se)
    elif margin_se:
        raise ConfigError("--margin-se keeps a margin from an accuracy budget: give --max-accuracy-drop too")
    plan = prepare_recipe(recipe, train_teacher=True) if train_teacher else recipe
    with devices.use(device):  # the workers too: they train where the leader said
        if not lead_or_serve(nproc):
            return
        with distributed.leading():
            result = run(teacher, data, target=target, recipe=plan, out=out,
                         weights=str(weights) if weights else None, resume=resume, overwrite=overwrite,
                         trust_checkpoint=trust_checkpoint, device=device, budget=budget)
    summary = result.report["summary"]
    typer.echo(f"{result.report['target']['name']}: accuracy {summary['accuracy']:.4f} ({summary['accuracy_source']}, "
               f"report split: {result.report['data']['splits']['report']['from']}), "
               f"{summary['params']:,} params, {summary['macs']:,} MACs; report in {result.out_dir / 'report.md'}")


@app.command()
@user_errors
def train(
    model: Annotated[str, typer.Argument(help="Zoo model name or package.module:factory.")],
    out: Annotated[Path, typer.Option(help="Where to save the trained weights (.safetensors).")],
    data: Annotated[str, typer.Option(help="fashion-mnist, a folder, or package.module:function.")] = "fashion-mnist",
    epochs: Annotated[int, typer.Option(min=0)] = 15,
    lr: Annotated[float, typer.Option(min=0)] = 0.1,
    batch_size: Annotated[int, typer.Option(min=1)] = 128,
    optimizer: Annotated[str, typer.Option(help="sgd or adamw.")] = "sgd",
    schedule: Annotated[str, typer.Option(help="onecycle or cosine.")] = "onecycle",
    label_smoothing: Annotated[float, typer.Option(min=0, max=0.99)] = 0.1,
    seed: int = 0,
    train_subset: Annotated[Optional[int], typer.Option(help="Train on this many images only.")] = None,
    nproc: Annotated[int, typer.Option(min=1, help=NPROC_HELP)] = 1,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
) -> None:
    """Train a model on a dataset and save its weights (resumes from OUT.ckpt if interrupted)."""
    from pydantic import ValidationError

    from edgekd import device as devices
    from edgekd import distributed
    from edgekd.api import train as run
    from edgekd.data import DataSpec
    from edgekd.train import TrainConfig

    try:
        config = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, schedule=schedule,
                             label_smoothing=label_smoothing, seed=seed)
    except ValidationError as exc:
        raise EdgekdError(f"invalid training option: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from None
    with devices.use(device):
        if not lead_or_serve(nproc):
            return
        with distributed.leading():
            _, result = run(model, DataSpec(source=data, train_subset=train_subset), config=config, out=out)
    typer.echo(f"{model}: accuracy {result.report_accuracy:.4f} on the report split ({result.accuracy:.4f} on the "
               f"selection split) after {epochs} epochs ({result.seconds:.0f} s); weights in {out}")


@targets_app.callback()
@user_errors
def targets(ctx: typer.Context) -> None:
    """List the target profiles."""
    if ctx.invoked_subcommand is not None:
        return
    from edgekd.targets import list_targets, load_target

    for name in list_targets():
        profile = load_target(name)
        typer.echo(f"{name:18} {profile.runtime.value:12} {profile.precision.value:5} {profile.description}")


@targets_app.command("show")
@user_errors
def targets_show(name: Annotated[str, typer.Argument(help="Profile name or YAML file.")]) -> None:
    """Print one target profile as YAML (host: as detected on this machine)."""
    import yaml

    from edgekd.targets import load_target

    typer.echo(yaml.safe_dump(load_target(name).model_dump(mode="json", exclude_none=True), sort_keys=False).rstrip())


@app.command()
@user_errors
def bench(
    model: Annotated[Path, typer.Argument(help="An ONNX model, e.g. RUN/model.onnx.")],
    target: Annotated[str, typer.Option(help="The profile this machine stands for (host, or the device you are on).")] = "host",
    batch: Annotated[Optional[list[int]], typer.Option(help="Batch size (repeatable); default: the profile's.")] = None,
    runs: Annotated[int, typer.Option(min=200, help="Timed runs per batch size.")] = 200,
    out: Annotated[Optional[Path], typer.Option(help="Where to write the measured records (JSON).")] = None,
) -> None:
    """Measure an ONNX model's latency here, with the target's runtime and threads, and save the record."""
    from edgekd.atomic import write_json
    from edgekd.bench import bench_onnx

    records = bench_onnx(model, target, batch_sizes=tuple(batch) if batch else None, runs=runs)
    for r in records:
        typer.echo(f"{r.device}: batch {r.batch}: median {r.ms:.3f} ms, p90 {r.p90_ms:.3f} ms, p99 {r.p99_ms:.3f} ms "
                   f"({r.runtime}, {r.threads} threads, {r.runs} runs, measured)")
    out = out or model.with_name(f"bench-{target}.json")
    write_json(out, {"model": str(model), "target": target, "latency": [r.to_dict() for r in records]})
    typer.echo(f"records in {out}")


@app.command()
@user_errors
def report(
    runs: Annotated[list[Path], typer.Argument(help="Run folders (from `edgekd compress --out`).")],
    merge: Annotated[Optional[list[Path]],
                     typer.Option(help="`edgekd bench --out` files to add to the (one) run's report.")] = None,
) -> None:
    """Add device measurements to a run's report, or compare runs side by side."""
    from edgekd.report import compare_runs, merge_measurements

    if merge:
        if len(runs) != 1:
            raise EdgekdError("--merge adds measurements to one run: give exactly one run folder")
        added = sum(merge_measurements(runs[0], path) for path in merge)
        typer.echo(f"{added} measured records added; {runs[0] / 'report.md'} and report.html rewritten")
        return
    typer.echo(compare_runs(runs), nl=False)


@app.command()
def models(pattern: Annotated[str, typer.Argument(help="Shell-style pattern, e.g. 'resnet*'.")] = "*") -> None:
    """List the zoo models."""
    from edgekd.models import list_models

    for name in list_models(pattern):
        typer.echo(name)


@app.command()
def recipes() -> None:
    """List the shipped recipes."""
    from edgekd.recipe import list_recipes, load_recipe

    for name in list_recipes():
        recipe = load_recipe(name)
        typer.echo(f"{name:10} {' → '.join(s.stage for s in recipe.stages):40} {recipe.description}")


def main() -> None:
    app(prog_name="edgekd")


if __name__ == "__main__":
    sys.exit(main())
