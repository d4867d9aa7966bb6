"""MkDocs hook: fill the reference pages from edgekd's registries at build time, so they cannot be stale.

A page line ``<!-- generated:NAME -->`` (or ``<!-- generated:NAME ARG -->``) is replaced by what
``GENERATED[NAME]()`` (or ``GENERATED[NAME](ARG)``) returns: the target profiles (``targets/*.yaml``, as
``edgekd targets`` loads them), the runtime descriptors (``edgekd/runtime/*.yaml``), the recipes
(``recipes/*.yaml``, verbatim, with their stage chain), each stage's settings (``STAGES``: field, default,
choices, meaning), and what the distill stage reads of each loss (``LOSSES``: needs a teacher, is a phase,
...). The pages are committed with the markers only; ``make docs`` (or tests/test_docs.py) fills them. Results are not generated here: their numbers are
rendered into the committed pages by ``benchmarks/render_readme.py``.
"""

from __future__ import annotations

import enum
import re
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path

import yaml
from mkdocs.exceptions import PluginError

MARKER = re.compile(r"^<!-- generated:([a-z0-9-]+)(?: ([a-z0-9-]+))? -->[ \t]*$", re.M)


def targets_table() -> str:
    from edgekd.targets import list_targets, load_target

    out = ["| profile | runtime | precision | int8 activations | channel multiple | batch sizes | latency estimate |",
           "|---|---|---|---|---:|---|---|"]
    for name in list_targets():
        t = load_target(name)
        v = t.estimate.validation
        est = ("measured, not estimated" if t.is_host else
               f"median error {v.median_abs_error:.0%} on {v.held_out} held-out published rows" if v else "unvalidated")
        out.append(f"| [`{name}`](#{name}) | {t.runtime.value} | {t.precision.value} | "
                   f"{t.quantization.activations.value} | {t.channel_multiple} | "
                   f"{', '.join(map(str, t.batch_sizes))} | {est} |")
    return "\n".join(out)


def targets_files() -> str:
    from edgekd.builtin import builtin_dir
    from edgekd.targets import list_targets

    return "\n\n".join(f"### {name}\n\n```yaml\n{(builtin_dir('targets') / f'{name}.yaml').read_text().rstrip()}\n```"
                       for name in list_targets())


def runtimes_table() -> str:
    """One row per runtime descriptor: what edgekd decides by runtime, as its descriptor says."""
    from edgekd.runtime.descriptor import Measure, descriptor, list_runtimes

    measured = {Measure.ENGINE: "on the device, with its own engine", Measure.HOST: "here, on a CPU of its kind"}
    out = ["| runtime | backend | measured | int8 activations | Q/DQ types | deploy/ files | execution providers |",
           "|---|---|---|---|---|---|---|"]
    for name in list_runtimes():
        d = descriptor(name)
        backend = f"`{d.module}`" if d.module else "none (deploy only)"
        out.append(f"| [`{name}`](#{name}) | {backend} | {measured[d.measure]} | "
                   f"{', '.join(a.value for a in d.quantization.activations)} | "
                   f"{', '.join(sorted(d.compliance.dtypes))} | {', '.join(d.deploy.files)} | "
                   f"{', '.join(d.deploy.execution_providers)} |")
    return "\n".join(out)


def runtimes_files() -> str:
    from edgekd.runtime.descriptor import descriptor_path, list_runtimes

    return "\n\n".join(f"### {name}\n\n```yaml\n{descriptor_path(name).read_text().rstrip()}\n```"
                       for name in list_runtimes())


def recipes() -> str:
    from edgekd.builtin import builtin_dir, builtin_names

    out = []
    for name in builtin_names("recipes"):
        text = (builtin_dir("recipes") / f"{name}.yaml").read_text()
        data = yaml.safe_load(text)
        chain = " → ".join(s["stage"] for s in data["stages"])
        out.append(f"### {name}\n\n{data.get('description', '')}\n\n`{chain}` · "
                   f"`edgekd compress --recipe {name}`\n\n```yaml\n{text.rstrip()}\n```")
    return "\n\n".join(out)


def shown(default) -> str:
    """A setting's default as a recipe would write it (YAML flow style, on one line)."""
    plain = lambda x: (x.model_dump(mode="json") if hasattr(x, "model_dump") else  # noqa: E731
                       [plain(v) for v in x] if isinstance(x, (tuple, list)) else getattr(x, "value", x))
    text = yaml.safe_dump(plain(default), default_flow_style=True, width=10**6, sort_keys=False).strip()
    return text.removesuffix("\n...").removesuffix(" ...").replace("|", "\\|")


def choices(annotation) -> str:
    """``one of a, b, c`` for an enum, Literal or bool setting (also inside ``X | Y``), else empty."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    kinds = typing.get_args(annotation) if union else (annotation,)
    values = []
    for kind in kinds:
        if isinstance(kind, type) and issubclass(kind, enum.Enum):
            values += [x.value for x in kind]
        elif typing.get_origin(kind) is typing.Literal:
            values += typing.get_args(kind)
    if values and bool in kinds:
        values += ["true", "false"]
    return "one of " + ", ".join(f"`{x}`" for x in values) if values else ""


def stage_settings(name: str | None = None) -> str:
    """Each stage's settings (or one stage's, without its heading): field, default, choices and meaning."""
    from edgekd.stages import STAGES

    out = []
    for stage, cls in STAGES.items():
        if name not in (None, stage):
            continue
        rows = ["| setting | default | meaning |", "|---|---|---|"]
        for field, info in cls.model_fields.items():
            if field == "stage":
                continue
            default = shown(info.get_default(call_default_factory=True))
            meaning = "; ".join(x for x in (choices(info.annotation), info.description) if x)
            rows.append(f"| `{field}` | `{default}` | {meaning} |")
        doc = (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        out.append("\n".join(rows) if name else f"### {stage}\n\n{doc}\n\n" + "\n".join(rows))
    if not out:
        raise PluginError(f"no stage {name!r} in STAGES; known: {', '.join(STAGES)}")
    return "\n\n".join(out)


def loss_properties() -> str:
    """What the distill stage reads of each registered loss: its class attributes, never its name."""
    from edgekd.distill import LOSSES

    yes = lambda flag: "yes" if flag else ""  # noqa: E731
    out = ["| loss | needs a teacher | a phase | trains its own teachers | includes the label term | "
           "needs sample indices |", "|---|---|---|---|---|---|"]
    for name, entry in LOSSES.items():
        out.append(f"| `{name}` | {yes(entry.needs_teacher)} | {yes(entry.is_phase)} | {yes(entry.makes_teachers)} | "
                   f"{yes(getattr(entry, 'uses_labels', False))} | {yes(getattr(entry, 'needs_indices', False))} |")
    return "\n".join(out)


GENERATED: dict[str, Callable[..., str]] = {
    "targets-table": targets_table,
    "targets-files": targets_files,
    "runtimes-table": runtimes_table,
    "runtimes-files": runtimes_files,
    "recipes": recipes,
    "stage-settings": stage_settings,
    "loss-properties": loss_properties,
}


def on_config(config):
    """Read the registries of the checkout being documented, not of whichever edgekd is installed."""
    root = str(Path(config.config_file_path).resolve().parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    return config


def on_page_markdown(markdown: str, page, config, files) -> str:
    def fill(m: re.Match) -> str:
        if m[1] not in GENERATED:
            raise PluginError(f"{page.file.src_path}: unknown generated block {m[1]!r}; known: {', '.join(GENERATED)}")
        return GENERATED[m[1]](m[2]) if m[2] else GENERATED[m[1]]()
    return MARKER.sub(fill, markdown)
