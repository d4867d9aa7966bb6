"""``report.html``: one self-contained page (inline CSS and SVG, no scripts, no network) with plots.

Plots: accuracy against latency for every stage's figures on every device (measured points
filled, estimates hollow, never mixed up), size and MACs per stage, and, for measured runs, the
time per layer from ONNX Runtime's profiler.
"""

from __future__ import annotations

import html
import math

from edgekd.records import describe_uncertainty
from edgekd.report.figures import heading, label, value
from edgekd.report.search import search_html

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
STYLE = """body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}.estimated{font-style:italic;color:#555}
.note{background:#fff8e1;padding:4px 8px;margin:4px 0}svg{background:#fafafa;border:1px solid #eee}
svg text{font:11px system-ui,sans-serif}"""


def render_html(report: dict) -> str:
    target = report["target"]
    parts = [f"<h1>edgekd report: {esc(report['recipe']['name'])} → {esc(target['name'])}</h1>",
             f"<p>Target <b>{esc(target['name'])}</b>: {esc(target['description'])} (runtime {esc(target['runtime'])},"
             f" precision {esc(target['precision'])}). Data: {esc(report['data']['name'])}.</p>",
             "<ul>" + "".join(f"<li><b>{esc(role)}</b>: {esc(split['from'])}; {esc(split['use'])}</li>"
                              for role, split in report["data"]["splits"].items()) + "</ul>",
             "<h2>Stages</h2>", stage_table(report),
             f"<h2>{esc(heading(report))} and latency</h2>", accuracy_latency_plot(report),
             "<p>Filled points are measurements, hollow points estimates; a device with neither has no point.</p>",
             "<h2>Size and MACs per stage</h2>",
             bar_chart([(s["name"], s["size_bytes"] / 1e6) for s in report["stages"]], "size (MB)"),
             bar_chart([(s["name"], s["macs"] / 1e6) for s in report["stages"]], "MACs (M)"),
             "<h2>Latency records</h2>", latency_table(report)]
    layers = [(s["name"], s["details"]["layer_times"]) for s in report["stages"] if s["details"].get("layer_times")]
    for name, times in layers:
        parts += [f"<h2>Time per layer ({esc(name)}, ONNX Runtime profiler, batch {times['batch']}, this machine)</h2>",
                  bar_chart([(t["node"], t["us"]) for t in times["nodes"]], "µs per run", horizontal=True)]
    if report.get("search"):
        parts.append(search_html(report["search"], label(report)))
    notes = [(s["name"], n) for s in report["stages"] for n in s["details"].get("notes", [])]
    if notes:
        parts += ["<h2>Notes</h2>"] + [f"<div class='note'><b>{esc(s)}</b>: {esc(n)}</div>" for s, n in notes]
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>edgekd report: {esc(report['recipe']['name'])} → {esc(target['name'])}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")


def stage_table(report: dict) -> str:
    rows = "".join(f"<tr><td>{esc(s['name'])}</td><td>{s['params']:,}</td><td>{s['macs']:,}</td>"
                   f"<td>{s['size_bytes'] / 1e6:.3f} MB</td><td>{value(report, s['accuracy'])}</td>"
                   f"<td>{esc(s['accuracy_source'])}</td><td>{value(report, s.get('selection_accuracy'))}</td>"
                   f"<td>{s['seconds']:.1f} s</td></tr>" for s in report["stages"])
    return (f"<table><tr><th>stage</th><th>params</th><th>MACs</th><th>size</th><th>{esc(label(report))} "
            "(report split)</th>"
            f"<th>measured with</th><th>selection split</th><th>time</th></tr>{rows}</table>")


def latency_table(report: dict) -> str:
    rows = []
    for s in report["stages"]:
        for r in s["latency"]:
            figure = "–" if r["ms"] is None else f"{r['ms']:.3f}"
            css = " class='estimated'" if r["kind"] == "estimated" else ""
            error = describe_uncertainty(r["kind"], r.get("uncertainty_pct"), r.get("held_out_measurements", 0),
                                         r.get("outside_validated_range", ""))
            rows.append(f"<tr{css}><td>{esc(s['name'])}</td><td>{esc(r['device'])}</td><td>{esc(r['runtime'])}</td>"
                        f"<td>{r['batch']}</td><td>{figure}</td><td>{esc(r['kind'])}</td><td>{esc(error or '–')}</td>"
                        f"<td>{esc(r['note'])}</td></tr>")
    if not rows:
        return "<p>No latency in this run (add a benchmark stage).</p>"
    return ("<table><tr><th>stage</th><th>device</th><th>runtime</th><th>batch</th><th>median ms</th><th>kind</th>"
            f"<th>uncertainty</th><th>note</th></tr>{''.join(rows)}</table>")


def accuracy_latency_plot(report: dict, width: int = 640, height: int = 360) -> str:
    """Per device and batch: (latency, accuracy) of every stage that has a figure, log-scaled latency."""
    points = [(s["name"], r["device"], r["batch"], r["ms"], s["accuracy"],
               r["kind"] + (f", {error}" if (error := describe_uncertainty(
                   r["kind"], r.get("uncertainty_pct"), r.get("held_out_measurements", 0),
                   r.get("outside_validated_range", ""))) else ""))
              for s in report["stages"] for r in s["latency"] if r["ms"] and s["accuracy"] is not None]
    # compression stages time their output against their input on this machine: the "before" point
    # has the previous stage's accuracy
    for previous, s in zip(report["stages"], report["stages"][1:]):
        for c in s["details"].get("host_latency", []):
            if s["accuracy"] is not None and previous["accuracy"] is not None:
                points += [(previous["name"], "host, side by side", c["batch"], c["baseline_ms"], previous["accuracy"],
                            "measured"),
                           (s["name"], "host, side by side", c["batch"], c["candidate_ms"], s["accuracy"], "measured")]
    if not points:
        return f"<p>No stage has both {esc(label(report))} and a latency figure.</p>"
    series = sorted({(p[1], p[2]) for p in points})
    xs, ys = [math.log10(p[3]) for p in points], [p[4] for p in points]
    x0, x1 = min(xs) - 0.2, max(xs) + 0.2
    y0, y1 = min(ys) - 0.01, max(ys) + 0.01
    left, bottom = 60, height - 40

    def at(ms: float, acc: float) -> tuple[float, float]:
        return (left + (math.log10(ms) - x0) / (x1 - x0) * (width - left - 20),
                bottom - (acc - y0) / (y1 - y0) * (bottom - 20))

    marks = []
    for name, device, batch, ms, acc, kind in points:
        colour = PALETTE[series.index((device, batch)) % len(PALETTE)]
        x, y = at(ms, acc)
        fill = colour if kind == "measured" else "none"
        marks.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='5' fill='{fill}' stroke='{colour}' stroke-width='2'>"
                     f"<title>{esc(name)}: {value(report, acc)}, {ms:.3f} ms ({esc(kind)}, {esc(device)}, batch {batch})</title>"
                     f"</circle><text x='{x + 7:.1f}' y='{y - 6:.1f}'>{esc(name)}</text>")
    legend = "".join(f"<text x='{width - 250}' y='{20 + 14 * i}' fill='{PALETTE[i % len(PALETTE)]}'>"
                     f"● {esc(device[:28])}, batch {batch}</text>" for i, (device, batch) in enumerate(series))
    ticks = "".join(f"<text x='{at(10 ** e, y0)[0]:.1f}' y='{bottom + 15}'>{10 ** e:g} ms</text>"
                    for e in range(math.floor(x0), math.ceil(x1) + 1) if x0 <= e <= x1)
    return (f"<svg role='img' aria-label='{esc(label(report))} against latency' width='{width}' height='{height}'>"
            f"<line x1='{left}' y1='{bottom}' x2='{width - 20}' y2='{bottom}' stroke='#999'/>"
            f"<line x1='{left}' y1='20' x2='{left}' y2='{bottom}' stroke='#999'/>"
            f"<text x='5' y='25'>{value(report, y1)}</text><text x='5' y='{bottom}'>{value(report, y0)}</text>{ticks}"
            f"<text x='{width // 2}' y='{height - 5}'>latency per batch (log scale)</text>"
            f"{''.join(marks)}{legend}</svg>")


def bar_chart(values: list[tuple[str, float]], label: str, *, horizontal: bool = False, width: int = 640) -> str:
    """Bars with their values written on them; ``horizontal`` for long names (layers)."""
    if not values:
        return ""
    top = max(v for _, v in values) or 1.0
    if horizontal:
        height = 22 * len(values) + 30
        bars = "".join(
            f"<rect x='220' y='{10 + 22 * i}' width='{max(1.0, v / top * (width - 300)):.1f}' height='16' "
            f"fill='{PALETTE[0]}'/><text x='215' y='{22 + 22 * i}' text-anchor='end'>{esc(name[-34:])}</text>"
            f"<text x='{225 + v / top * (width - 300):.1f}' y='{22 + 22 * i}'>{v:,.1f}</text>"
            for i, (name, v) in enumerate(values))
        return f"<svg role='img' aria-label='{esc(label)}' width='{width}' height='{height}'>{bars}" \
               f"<text x='220' y='{height - 5}'>{esc(label)}</text></svg>"
    height, slot = 220, (width - 60) / len(values)
    bars = "".join(
        f"<rect x='{50 + i * slot + slot * 0.15:.1f}' y='{180 - v / top * 150:.1f}' width='{slot * 0.7:.1f}' "
        f"height='{max(1.0, v / top * 150):.1f}' fill='{PALETTE[i % len(PALETTE)]}'/>"
        f"<text x='{50 + i * slot + slot * 0.15:.1f}' y='{175 - v / top * 150:.1f}'>{v:,.3g}</text>"
        f"<text x='{50 + i * slot + slot * 0.15:.1f}' y='198'>{esc(name)}</text>" for i, (name, v) in enumerate(values))
    return f"<svg role='img' aria-label='{esc(label)}' width='{width}' height='{height}'>{bars}" \
           f"<text x='5' y='15'>{esc(label)}</text></svg>"


def esc(value) -> str:
    return html.escape(str(value), quote=True)
