"""The documentation site builds in strict mode, and its generated reference covers every registry entry."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "docs" / "hooks"))


def require_mkdocs() -> None:
    missing = [m for m in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")
               if importlib.util.find_spec(m.split(".")[0]) is None]
    if missing:  # a failure, not a skip: CI must build the site (make test's setup installs the docs extra)
        pytest.fail(f"{', '.join(missing)} not installed: run `make setup` (pip install -e '.[test,docs]')")


def build(config: Path, out: Path) -> subprocess.CompletedProcess:
    require_mkdocs()
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = build(REPO / "mkdocs.yml", out)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


def test_the_site_builds_strictly(site):
    pages = {p.relative_to(site).as_posix() for p in site.rglob("index.html")}
    for page in ("index.html", "getting-started/index.html", "concepts/index.html", "faq/index.html",
                 "reliability/index.html", "reference/api/index.html", "results/index.html",
                 *(f"stages/{s}/index.html" for s in ("teacher", "distill", "prune", "factorize", "quantize",
                                                       "export", "benchmark"))):
        assert page in pages


def test_strict_mode_fails_on_a_broken_link_or_anchor(tmp_path):
    """The site's own settings (strict, link and anchor validation), on two pages with a broken link each."""
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    assert config["strict"] is True
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# Home\n\n[gone](no-such-page.md)\n")
    (tmp_path / "docs" / "other.md").write_text("# Other\n\n[anchor](index.md#no-such-heading)\n")
    config.update(docs_dir=str(tmp_path / "docs"), nav=["index.md", "other.md"], plugins=["search"], hooks=[])
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    done = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0
    assert "no-such-page.md" in done.stderr and "no-such-heading" in done.stderr


def test_the_reference_pages_are_generated_from_the_registries(site):
    from edgekd.builtin import builtin_names
    from edgekd.runtime.descriptor import list_runtimes
    from edgekd.stages import STAGES

    targets = (site / "reference" / "targets" / "index.html").read_text()
    recipes = (site / "reference" / "recipes" / "index.html").read_text()
    api = (site / "reference" / "api" / "index.html").read_text()
    runtimes = (site / "reference" / "runtimes" / "index.html").read_text()
    assert "generated:" not in targets + recipes + runtimes
    for name in builtin_names("targets"):
        assert f'id="{name}"' in targets
    assert "<table>" in runtimes and "TensorrtExecutionProvider" in runtimes  # the table rendered
    for name in list_runtimes():
        assert f'id="{name}"' in runtimes
    for name in builtin_names("recipes"):
        assert f'id="{name}"' in recipes and f"edgekd compress --recipe {name}" in recipes
    for stage, cls in STAGES.items():
        assert f'id="{stage}"' in recipes
        for field in cls.model_fields:
            if field != "stage":
                assert f"<code>{field}</code>" in recipes, (stage, field)
    for name in ("edgekd.api.compress", "edgekd.prune.goal.prune_model", "edgekd.quantize.int8.quantize_model"):
        assert f'id="{name}"' in api
    from edgekd.distill import LOSSES

    distill = (site / "stages" / "distill" / "index.html").read_text()
    assert "generated:" not in distill and "trains its own teachers" in distill
    for name in LOSSES:
        assert f"<code>{name}</code>" in distill, name


def test_a_setting_lists_its_choices():
    import reference

    from edgekd.stages import STAGES

    assert reference.choices(STAGES["prune"].model_fields["importance"].annotation) == \
        "one of `l1`, `l2`, `bn-scale`, `taylor`"
    assert reference.choices(STAGES["prune"].model_fields["sparsity_2_4"].annotation) == "one of `auto`, `true`, `false`"
    assert reference.choices(STAGES["prune"].model_fields["reduction"].annotation) == ""
    assert reference.shown((1, 64)) == "[1, 64]"


def test_an_unknown_generated_block_is_one_clear_error():
    import reference
    from mkdocs.exceptions import PluginError

    class Page:
        class file:
            src_path = "x.md"

    with pytest.raises(PluginError, match="x.md: unknown generated block 'nope'"):
        reference.on_page_markdown("<!-- generated:nope -->\n", Page, None, None)
    with pytest.raises(PluginError, match="no stage 'nope' in STAGES"):
        reference.on_page_markdown("<!-- generated:stage-settings nope -->\n", Page, None, None)
