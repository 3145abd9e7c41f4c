"""The audit's page rendering: the self-contained HTML page and the Markdown summary of the
figures flows/report.py computes (an `Audit`). Nothing here computes a figure."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flows.report import Audit


def headline_table(audit: Audit) -> list[dict[str, str]]:
    """The headline as records (figure, value, n, note): the Prefect table artifact."""
    return [{"figure": h.figure, "value": h.stat.value_text, "n": h.stat.n_text, "note": h.stat.note}
            for h in audit.headline]




def render_markdown(audit: Audit, other: Audit | None = None) -> str:
    """The summary: headline and every section's tables and notes (plots and sortable
    per-item tables are in the HTML)."""
    data = audit.data
    lines = [f"# Label-quality audit: {data.label}" + (f" vs {other.data.label}" if other else ""), "",
             f"Published {data.published_at} · code {data.code_version} · "
             f"snapshots {', '.join(f'{s.name} ({s.n_qrels} judged pairs' + (f', {s.n_skipped} records skipped at ingest' if s.n_skipped else '') + ')' for s in data.snapshots) or 'n/a'}", "",
             "## Headline", "", *markdown_table(["figure", "value", "n", "note"],
                                                 [list(r.values()) for r in headline_table(audit)])]
    for section in audit.sections:
        if section.key == "samples":
            continue
        lines += ["", f"## {section.title}", ""]
        lines += [f"- {note}" for note in section.notes]
        for table in section.tables:
            if not table.sortable:  # long per-item tables stay in the HTML page and its Parquet/CSV
                lines += ["", f"**{table.caption}**", "", *markdown_table(table.columns, table.rows)]
    lines += ["", "Plots, the per-list table and samples to read are in the HTML report.", ""]
    return "\n".join(lines)


def markdown_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    return ["| " + " | ".join(map(cell, columns)) + " |", "|" + "---|" * len(columns),
            *("| " + " | ".join(map(cell, row)) + " |" for row in rows)]


def render_html(audit: Audit, other: Audit | None = None, teachers: str = "") -> str:
    """One self-contained page: inline CSS and script, plots as data URIs, every text
    HTML-escaped. Tables marked sortable sort by a column when its header is clicked."""
    import jinja2

    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return environment.from_string(PAGE).render(
        audit=audit, other=other, data=audit.data, headline=headline_table(audit), teachers=teachers or "n/a")


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Label-quality audit: {{ data.label }}{% if other %} vs {{ other.data.label }}{% endif %}</title>
<style>
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1a202c;
       max-width: 1100px; margin: 0 auto; padding: 1.5rem; background: #fff; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { border-bottom: 2px solid #e2e8f0; padding-bottom: .2rem; margin-top: 2.2rem; }
h3 { font-size: 1rem; margin: 1.2rem 0 .4rem; }
.meta, .note { color: #4a5568; }
.na { color: #9c4221; }
nav a { margin-right: .8rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
caption { text-align: left; font-weight: 600; padding: .3rem 0; }
th, td { border: 1px solid #cbd5e0; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #edf2f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
#headline { font-size: 1rem; }
#headline td:first-child { font-weight: 500; }
figure { margin: .5rem 0 1.2rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #e2e8f0; }
figcaption { color: #4a5568; font-size: .85rem; }
.row { border: 1px solid #cbd5e0; border-radius: 6px; padding: .6rem .9rem; margin: .8rem 0; }
.row h3 { margin-top: 0; font-family: ui-monospace, monospace; font-size: .85rem; }
.status { font-weight: 600; }
.status.rejected { color: #c05621; } .status.accepted { color: #276749; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem .8rem; margin: .4rem 0; }
dt { font-weight: 600; color: #4a5568; }
dd { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.row table { font-size: .8rem; }
.row td:nth-child(-n+5) { white-space: nowrap; }
table { min-width: 24rem; }
table.sortable th { cursor: pointer; }
table.sortable th[aria-sort="ascending"]::after { content: " ▲"; }
table.sortable th[aria-sort="descending"]::after { content: " ▼"; }
</style>
</head>
<body>
<h1>Label-quality audit: {{ data.label }}{% if other %} vs {{ other.data.label }}{% endif %}</h1>
<p class="meta">Published {{ data.published_at }} · code {{ data.code_version }} ·
teachers {{ teachers }}{% for s in data.snapshots %}{% if loop.first %} · snapshots {% endif %}{{ s.name }}
({{ s.domain }}, {{ s.n_queries }} queries, {{ s.n_qrels }} judged pairs{% if s.n_skipped %}, {{ s.n_skipped }} records skipped at ingest{% endif %}){% if not loop.last %}, {% endif %}{% endfor %}</p>
<nav><a href="#headline-section">Headline</a>{% for s in audit.sections %}<a href="#{{ s.key }}">{{ s.title }}</a>{% endfor %}</nav>

<section id="headline-section">
<h2>Headline</h2>
<table id="headline">
<caption>Headline figures of {{ data.label }}, each with its sample size</caption>
<thead><tr><th>figure</th><th>value</th><th>n</th><th>note</th></tr></thead>
<tbody>
{% for h in headline %}<tr><td>{{ h.figure }}</td><td class="num">{{ h.value }}</td><td>{{ h.n }}</td><td class="note">{{ h.note }}</td></tr>
{% endfor %}</tbody>
</table>
</section>

{% macro render_table(t) %}
<table{% if t.key %} id="{{ t.key }}"{% endif %}{% if t.sortable %} class="sortable"{% endif %}>
<caption>{{ t.caption }}</caption>
<thead><tr>{% for c in t.columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
<tbody>{% for r in t.rows %}<tr>{% for c in r %}<td>{{ c }}</td>{% endfor %}</tr>{% endfor %}</tbody>
</table>
{% endmacro %}

{% for s in audit.sections %}
<section id="{{ s.key }}">
<h2>{{ s.title }}</h2>
{% for n in s.notes %}<p class="note{% if not s.available %} na{% endif %}">{{ n }}</p>{% endfor %}
{% for t in s.tables %}{{ render_table(t) }}{% endfor %}
{% for p in s.plots %}<figure><img src="{{ p.uri }}" alt="{{ p.caption }}"><figcaption>{{ p.caption }}</figcaption></figure>{% endfor %}
{% for r in s.rows %}
<div class="row">
<h3>{{ r.title }}</h3>
<p class="status {{ 'accepted' if r.status == 'accepted' else 'rejected' }}">{{ r.status }}</p>
<dl>{% for name, text in r.fields %}<dt>{{ name }}</dt><dd>{{ text }}</dd>{% endfor %}</dl>
{% if r.passages %}{{ render_table(r.passages) }}{% endif %}
</div>
{% endfor %}
</section>
{% endfor %}
<script>
// Sort a table.sortable by the clicked column: numbers numerically (n/a last), text alphabetically.
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, column) {
    th.addEventListener("click", function () {
      var ascending = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th").forEach(function (other) { other.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var key = function (row) {
        var text = row.cells[column].textContent.trim();
        var number = Number(text);
        return text !== "" && !isNaN(number) ? [0, number] : [1, text.toLowerCase()];
      };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x[0] !== y[0]) { return x[0] - y[0]; }
        var order = x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0;
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
</script>
</body>
</html>
"""
