"""The result blocks in README.md and docs/ are what benchmarks/render_readme.py renders from the committed results."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import readme_summary  # noqa: E402
import render_readme as rr  # noqa: E402

README = Path(rr.README)
REPO = README.parent


def test_readme_and_docs_match_committed_results():
    results = rr.Results()
    problems = [p for doc in rr.documents() for p in rr.check(doc.read_text(), results, rr.relative(doc))]
    assert not problems, "README.md or docs/ disagree with the results; run `make readme`:\n" + "\n".join(problems)


def test_readme_is_at_most_200_lines():
    assert len(README.read_text().splitlines()) <= 200, "README.md is a front page: move detail into docs/"


def test_readme_names_every_target_and_recipe():
    from edgekd.builtin import builtin_names

    text = README.read_text()
    missing = [n for kind in ("targets", "recipes") for n in builtin_names(kind) if not re.search(rf"\b{n}\b", text)]
    assert not missing, f"README.md does not name {missing}"


def test_readme_links_lead_to_files():
    """README.md is not part of the site, so the strict docs build does not check its links: this does."""
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README.read_text())
    assert "docs/index.md" in targets
    assert [t for t in targets if not (REPO / t).exists()] == []


def teacher_json(accuracy=0.9123):
    return {"model": "cnn", "params": 278890, "macs": 21903104, "epochs": 18, "accuracy": accuracy,
            "onnxruntime_accuracy": accuracy, "train_seconds": 960.0,
            "latency": [{"batch": 1, "pytorch_ms": 0.8, "onnxruntime_ms": 0.35, "onnxruntime_over_pytorch": 0.4375}]}


def test_a_block_renders_the_numbers_it_reads():
    text = rr.BLOCKS["teacher"](rr.Results(data={rr.res("teacher_fashion_mnist"): teacher_json()}))
    assert "| cnn | 278,890 | 21.9 M | 18 | 91.23% / 91.23% | 16.0 min |" in text
    assert "| 1 | 0.800 ms | 0.350 ms | 0.44× |" in text


def test_render_replaces_only_the_block_body():
    doc = "intro 99.99%\n<!-- rendered:teacher -->\nstale\n<!-- /rendered:teacher -->\nafter\n"
    blocks = {"teacher": rr.BLOCKS["teacher"]}
    data = rr.Results(data={rr.res("teacher_fashion_mnist"): teacher_json(0.5)})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rr, "BLOCKS", blocks)
        out = rr.render(doc, data)
        assert out.startswith("intro 99.99%\n<!-- rendered:teacher -->\n| model |") and out.endswith(
            "<!-- /rendered:teacher -->\nafter\n")
        assert "50.00% / 50.00%" in out and "stale" not in out
        problems = rr.check(doc, data)
        assert len(problems) == 1 and problems[0].startswith("README.md: block teacher differs") and "-stale" in problems[0]
        assert rr.check(out, data) == []


def estimator_devices_json():
    return {"row_count": 3, "models": ["resnet50", "yolov8n"], "devices": ["jetson-orin", "jetson-orin-nano"],
            "lomo_median_abs_rel_error": 0.354, "lomo_target": 0.2, "lomo_target_met": False,
            "fit_median_abs_rel_error": 0.05, "free_parameters": 7,
            "lomo_worst_row": {"model": "resnet50", "device": "jetson-orin", "precision": "int8", "batch": 1,
                               "published_ms": 0.63, "lomo_estimated_ms": 1.1079, "lomo_abs_rel_error": 0.758,
                               "cited_as": "MLPerf v3.0"},
            "per_device": {"jetson-orin": {"rows": 2, "lomo_median_abs_error": 0.35},
                           "jetson-orin-nano": {"rows": 1, "lomo_median_abs_error": 0.422}},
            "revisions": ["one change"],
            "rows": [{"model": "yolov8n", "device": "jetson-orin-nano", "precision": "fp16", "batch": 1,
                      "published_ms": 4.43, "lomo_estimated_ms": 3.195, "lomo_abs_rel_error": 0.279, "cited_as": "trtexec"}]}


def test_estimator_devices_says_the_target_is_not_met():
    text = rr.BLOCKS["estimator-devices"](rr.Results(data={rr.res("estimator_devices"): estimator_devices_json()}))
    assert "**35.4% over 3 rows, 2 models" in text and "2 devices" in text
    assert "the target was 20%: **not met**" in text
    assert "jetson-orin 35% on 2 rows, jetson-orin-nano 42% on 1 rows" in text
    assert "resnet50 int8 batch 1 on jetson-orin, published 0.630 ms, estimated 1.108 ms (76% off" in text
    assert "| yolov8n | jetson-orin-nano | fp16 | 1 | 4.430 | 3.195 | 28% | trtexec |" in text
    assert "First look" not in text and "families" not in text  # only where the JSON has them


def test_estimator_devices_gives_families_first_looks_and_the_floor():
    e = {**estimator_devices_json(),
         "per_family": {"resnet50": {"rows": 2, "lomo_median_abs_rel_error": 0.749},
                        "yolo11": {"rows": 30, "lomo_median_abs_rel_error": 0.174}},
         "first_looks": [{"batch": "yolo11", "rows": 30, "calibration_from": "the 28-row fit",
                          "median_abs_rel_error": 0.18, "max_abs_rel_error": 0.86},
                         {"batch": "yolov7", "rows": 8, "calibration_from": "the revised fit",
                          "median_abs_rel_error": 0.138, "max_abs_rel_error": 0.38,
                          "compared_with": {"calibration_from": "the fit before", "median_abs_rel_error": 0.165,
                                            "max_abs_rel_error": 0.38}}],
         "repeat_spread": {"pairs": 30, "median_abs_rel_difference": 0.039, "max_abs_rel_difference": 0.11}}
    text = rr.BLOCKS["estimator-devices"](rr.Results(data={rr.res("estimator_devices"): e}))
    assert "2 models (resnet50, yolov8n; 2 families)" in text
    assert ("Per model family (held out together): resnet50 75% on 2 rows, yolo11 17% on 30 rows; the median of the "
            "families' medians, each family counted once: 46.2%.") in text
    assert "First look at the 30 yolo11 rows, predicted by the calibration committed before they were added " \
           "(the 28-row fit): **18.0% median**, worst 86%." in text
    assert ("First look at the 8 yolov7 rows, predicted by the calibration committed before they were added (the "
            "revised fit): **13.8% median**, worst 38%; the calibration it replaced (the fit before): 16.5%, worst "
            "38%.") in text
    assert "differ by 3.9% (median; worst 11%, 30 pairs)" in text
    met = rr.BLOCKS["estimator-devices"](rr.Results(data={rr.res("estimator_devices"): {
        **e, "lomo_median_abs_rel_error": 0.15, "lomo_target_met": True}}))
    assert ("the target was 20%: **met** by the median over rows (the median of the families' medians: 46.2%).") in met


def search_row(target, seed, pick_accuracy, speedup):
    return {"target": target, "seed": seed, "teacher_accuracy": 0.9361, "default_accuracy": 0.9284,
            "default_recipe_ships": "float", "pick": f"cnn-small/prune-0.{seed}0-global-float",
            "pick_accuracy": pick_accuracy, "drop_points": round((0.9361 - pick_accuracy) * 100, 2),
            "within_budget": True, "search_seconds": 600.0 + seed, "default_ms_b64": 3.0, "pick_ms_b64": 3.0 / speedup,
            "speedup_vs_default": speedup, "speedup_vs_default_rounds": [speedup],
            "speedup_vs_what_default_recipe_ships": speedup - 0.05,
            "latency": "measured side by side, median of 3 rounds (speed-ups: median of per-round ratios)"}


def test_search_renders_median_and_range_over_seeds():
    rows = [search_row("host", 0, 0.9266, 1.31), search_row("host", 1, 0.9270, 1.20), search_row("host", 2, 0.9280, 1.40)]
    summary = {"host": {"runs": 3, "seeds": [0, 1, 2], "picks": [x["pick"] for x in rows], "all_within_budget": True,
                        "pick_accuracy": {"median": 0.927, "min": 0.9266, "max": 0.928},
                        "drop_points": {"median": 0.91, "min": 0.81, "max": 0.95},
                        "speedup_vs_default": {"median": 1.31, "min": 1.2, "max": 1.4},
                        "speedup_vs_what_default_recipe_ships": {"median": 1.26, "min": 1.15, "max": 1.35},
                        "search_seconds": {"median": 601.0, "min": 600.0, "max": 602.0}}}
    data = {"max_accuracy_drop_points": 1.0, "batch": 64, "rows": rows, "summary": summary}
    text = rr.BLOCKS["search"](rr.Results(data={rr.res("search_fashion_mnist"): data}))
    assert "| host | 3 (0, 1, 2) | 93.61% | 92.84% | 92.70% (92.66%–92.80%) | 0.91 (0.81–0.95) | 1.31× (1.20–1.40) " \
           "| 1.26× (1.15–1.35) | yes | 10 min |" in text
    for x in rows:
        assert f"| host | {x['seed']} | `{x['pick']}` | {x['pick_accuracy']:.2%} |" in text
    assert "one run" not in text
    assert "| – | 3.000 / 2.290 |" in text  # no selection accuracies recorded: no margin


def test_each_search_run_shows_its_selection_margin_and_flags_the_edge():
    edge, roomy = search_row("host", 0, 0.9192, 1.67), search_row("host", 1, 0.9228, 1.59)
    for row, pick in ((edge, 5534), (roomy, 5570)):  # of 6,000 selection images; the teacher had 5,594
        row.update(splits={"selection": "6,000 items held out of fashion-mnist train (seed 0)"},
                   teacher_selection_accuracy=5594 / 6000, pick_selection_accuracy=pick / 6000)
    data = {"max_accuracy_drop_points": 1.0, "batch": 64, "rows": [edge, roomy],
            "summary": {"host": {"runs": 2, "all_within_budget": False,
                                 **{k: {"median": 1.0, "min": 1.0, "max": 1.0} for k in ("pick_accuracy",)}}}}
    text = rr.BLOCKS["search"](rr.Results(data={rr.res("search_fashion_mnist"): data}))
    assert "| 0.00 (0.35): *at the edge* |" in text
    assert "| 0.60 (0.33) |" in text


def test_runs_with_a_margin_are_summarized_apart_and_show_their_paired_margin():
    plain, careful = search_row("host", 0, 0.9266, 1.31), search_row("host", 0, 0.9290, 1.05)
    careful.update(margin_se=1.0, pick_margin={"points": 0.29, "standard_error_points": 0.21, "at_edge": False,
                                               "margin_se": 1.0})
    stats = {k: {"median": 0.93, "min": 0.93, "max": 0.93} for k in ("pick_accuracy", "drop_points")}
    summary = {"host": {"runs": 1, "all_within_budget": True, **stats,
                        "speedup_vs_default": {"median": 1.31, "min": 1.31, "max": 1.31}},
               "host, 1-SE margin": {"runs": 1, "all_within_budget": True, **stats,
                                     "speedup_vs_default": {"median": 1.05, "min": 1.05, "max": 1.05}}}
    data = {"max_accuracy_drop_points": 1.0, "batch": 64, "rows": [plain, careful], "summary": summary}
    results = rr.Results(data={rr.res("search_fashion_mnist"): data})
    runs = rr.BLOCKS["search"](results)
    assert "| host, 1-SE margin | 0 | `cnn-small/prune-0.00-global-float` | 92.90% |" in runs
    assert "| 0.29 (0.21 paired) |" in runs
    rows = readme_summary.search_rows(results)
    assert len(rows) == 2 and "≤ 1 point, `host`, 1-SE margin | its pick (1 run) |" in rows[1]
    assert "1.05× the speed" in rows[1] and "1.31× the speed" in rows[0]


def test_search_without_summary_says_one_run():
    row = search_row("host", 0, 0.9266, 1.305)
    del row["seed"]
    row["default_recipe_ships_ms_b64"] = 2.8527
    text = rr.BLOCKS["search"](rr.Results(data={rr.res("search_fashion_mnist"): {"rows": [row]}}))
    assert "One run per target" in text and "one run, not a median" in text
    assert "| host | 93.61% | 92.84% | cnn-small/prune-0.00-global-float | 92.66% |" in text
    assert "the pick is 1.25× faster (2.853 ms)" in text


@pytest.mark.parametrize("doc, words", [
    ("<!-- rendered:no-such-block -->\n<!-- /rendered:no-such-block -->\n", "page.md: marker names an unknown block 'no-such-block'"),
    ("<!-- rendered:teacher -->\nx\n", "page.md: block 'teacher' has no closing marker"),
    ("<!-- /rendered:teacher -->\n", "page.md has <!-- /rendered:teacher --> without its opening marker"),
    ("<!-- rendered:teacher -->\n<!-- /rendered:teacher -->\n" * 2, "page.md has block(s) teacher more than once"),
])
def test_a_bad_marker_is_one_clear_error_naming_its_document(doc, words):
    with pytest.raises(rr.ReadmeError) as e:
        rr.render(doc, rr.Results(data={}), "page.md")
    assert words in str(e.value)


def test_a_block_in_no_document_is_one_clear_error():
    with pytest.raises(rr.ReadmeError, match=r"no document \(README.md, docs/\) has the marker\(s\) for block\(s\) summary, "):
        rr.check_every_block_used({"README.md": "nothing here\n", "docs/x.md": "<!-- rendered:intro-example -->\n"
                                                                            "<!-- /rendered:intro-example -->\n"})


def test_a_missing_results_file_is_one_clear_error_naming_it(tmp_path):
    with pytest.raises(rr.ReadmeError) as e:
        rr.BLOCKS["teacher"](rr.Results(root=tmp_path))
    assert str(e.value).startswith("results file benchmarks/results/teacher_fashion_mnist.json is missing")
    with pytest.raises(rr.ReadmeError, match="examples/default/jetson-orin/report.json is missing"):
        rr.BLOCKS["intro-example"](rr.Results(data={}))


def test_every_block_is_in_some_document_and_the_summary_in_the_readme():
    texts = {rr.relative(doc): doc.read_text() for doc in rr.documents()}
    assert "README.md" in texts and "docs/results/distill.md" in texts
    rr.check_every_block_used(texts)
    assert [n for n, _, _ in rr.blocks_in(texts["README.md"])] == ["summary"]


def test_check_exits_1_and_names_the_block(tmp_path, capsys):
    source = REPO / "docs" / "results" / "teacher.md"
    page = tmp_path / "teacher.md"
    page.write_text(source.read_text().replace("<!-- rendered:teacher -->\n", "<!-- rendered:teacher -->\nstale row\n"))
    assert rr.main(["--check", str(page)]) == 1
    out = capsys.readouterr().out
    assert "block teacher differs" in out and "-stale row" in out
    assert rr.main([str(page)]) == 0 and rr.main(["--check", str(page)]) == 0
    assert page.read_text() == source.read_text()


def test_the_summary_quotes_the_search_median_and_says_when_the_pick_is_slower():
    real = rr.Results()
    names = ("distill_fashion_mnist", "prune_fashion_mnist", "factorize_fashion_mnist", "quantize_fashion_mnist",
             "estimator_devices", "segmentation")
    data = {p: real[p] for p in [rr.res(n) for n in names] +
            [f"examples/default/{t}/report.json" for t in ("jetson-orin", "host")]}
    rows = [search_row("host", s, a, x) for s, a, x in ((0, 0.9266, 0.9), (1, 0.9270, 1.2), (2, 0.9280, 1.4))]
    summary = {"host": {"runs": 3, "seeds": [0, 1, 2], "all_within_budget": True,
                        "pick_accuracy": {"median": 0.927, "min": 0.9266, "max": 0.928},
                        "drop_points": {"median": 0.91, "min": 0.81, "max": 0.95},
                        "speedup_vs_default": {"median": 1.2, "min": 0.9, "max": 1.4}}}
    data[rr.res("search_fashion_mnist")] = {"max_accuracy_drop_points": 1.0, "batch": 64, "rows": rows, "summary": summary}
    text = rr.BLOCKS["summary"](rr.Results(data=data))
    assert "| its pick (3 runs; median) | 92.70% (−0.91) | 1.20× the speed of the default recipe's student (b64), " \
           "measured |" in text
    summary["host"]["speedup_vs_default"]["median"] = 0.9
    assert "0.90× the speed of the default recipe's student (b64): slower" in rr.BLOCKS["summary"](rr.Results(data=data))
