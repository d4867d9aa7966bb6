"""The report's budget-search section: every candidate, the Pareto front, the finalists and the pick."""

from __future__ import annotations

from html import escape


def search_markdown(search: dict, metric: str = "accuracy") -> list[str]:
    lines = ["", "## Budget search", "",
             f"Asked for {search['goal']}; picked **{search['pick']}** (recipe `{search['recipe']}`, "
             f"{search['seconds']:.0f} s). Candidates are scored by a short KD fine-tune on held-out training "
             "images (the proxy); finalists after a full recovery, on the selection split (the report split is "
             "read only after the pick).", ""] + margin_lines(search) + [
             f"| candidate | proxy {metric} | latency | speed-up | MACs | on the front |",
             "|---|---:|---:|---:|---:|---|"]
    front = set(search["pareto"])
    for c in search["candidates"]:
        if c["error"]:
            lines.append(f"| {c['key']} | – | – | – | – | not built: {c['error'][:120]} |")
            continue
        lines.append(f"| {c['key']} | {c['accuracy']:.2%} | {c['latency_ms']:.3f} ms {c['latency_kind']} | "
                     f"{c['speedup']:.2f}× | {c['macs']:,} | {'yes' if c['key'] in front else ''} |")
    near = " (a near miss on the proxy)"
    lines += ["", "Finalists:", ""] + [f"- {f['scored']['key']}{near if f.get('near_miss') else ''}: {f['why']}"
                                       for f in search["finalists"]]
    return lines


def margin_lines(search: dict) -> list[str]:
    """The pick's distance to an accuracy budget, and whether it is inside one standard error of its drop."""
    m = search.get("pick_margin")
    if not m:
        return []
    said = f"the pick is {m['points']:.2f} points inside the budget on the selection split"
    kept = f"; the search kept {m['margin_se']:g} standard errors from the edge" if m.get("margin_se") else ""
    if m["standard_error_points"] is None:
        return [f"Margin: {said}; this metric has no standard error here.", ""]
    if m["at_edge"]:
        return [f"**At the edge:** {said}, less than one standard error of its drop there "
                f"({m['standard_error_points']:.2f} points, paired over the same images): on other images it may "
                f"miss the budget.", ""]
    return [f"Margin: {said}, more than one standard error of its drop ({m['standard_error_points']:.2f} points, "
            f"paired over the same images){kept}.", ""]


def search_html(search: dict, metric: str = "accuracy", width: int = 640, height: int = 320) -> str:
    """A scatter of every candidate (speed-up against proxy accuracy), the front joined, the pick ringed."""
    built = [c for c in search["candidates"] if not c["error"]]
    if not built:
        return ""
    xs, ys = [c["speedup"] for c in built], [c["accuracy"] for c in built]
    x0, x1 = min(xs) * 0.95, max(xs) * 1.05
    y0, y1 = min(ys) - 0.01, max(ys) + 0.01
    left, bottom = 60, height - 40

    def at(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (width - left - 20), bottom - (y - y0) / (y1 - y0) * (bottom - 20))

    front = sorted((c for c in built if c["key"] in search["pareto"]), key=lambda c: c["speedup"])
    path = " ".join(f"{at(c['speedup'], c['accuracy'])[0]:.1f},{at(c['speedup'], c['accuracy'])[1]:.1f}" for c in front)
    marks = []
    for c in built:
        x, y = at(c["speedup"], c["accuracy"])
        ring = c["key"] == search["pick"]
        marks.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='{7 if ring else 4}' fill='{'none' if ring else '#1f77b4'}' "
                     f"stroke='{'#d62728' if ring else '#1f77b4'}' stroke-width='2'><title>{escape(c['key'])}: "
                     f"{c['accuracy']:.2%} proxy, {c['latency_ms']:.3f} ms {escape(c['latency_kind'])}</title></circle>"
                     f"<text x='{x + 8:.1f}' y='{y - 6:.1f}'>{escape(c['key'])}</text>")
    rows = "".join(f"<tr><td>{escape(f['scored']['key'])}</td><td>{escape(f['why'])}</td></tr>"
                   for f in search["finalists"])
    return (f"<h2>Budget search</h2><p>Asked for {escape(search['goal'])}; picked <b>{escape(str(search['pick']))}</b> "
            f"(recipe <code>{escape(search['recipe'])}</code>). Proxy {escape(metric)}: a short KD fine-tune scored on held-out "
            "training images; the line joins the Pareto front, the ring marks the pick.</p>"
            f"<svg role='img' aria-label='candidates: proxy {escape(metric)} against speed-up' width='{width}' "
            f"height='{height}'><line x1='{left}' y1='{bottom}' x2='{width - 20}' y2='{bottom}' stroke='#999'/>"
            f"<line x1='{left}' y1='20' x2='{left}' y2='{bottom}' stroke='#999'/>"
            f"<text x='5' y='25'>{y1:.1%}</text><text x='5' y='{bottom}'>{y0:.1%}</text>"
            f"<text x='{left}' y='{bottom + 15}'>{x0:.2f}×</text><text x='{width - 60}' y='{bottom + 15}'>{x1:.2f}×</text>"
            f"<text x='{width // 2 - 80}' y='{height - 5}'>speed-up over the original</text>"
            f"<polyline points='{path}' fill='none' stroke='#ff7f0e' stroke-width='1.5'/>{''.join(marks)}</svg>"
            f"<table><tr><th>finalist</th><th>on the validation set</th></tr>{rows}</table>")
