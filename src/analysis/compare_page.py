"""The pages of a comparison of two runs: compare.md and compare.html (a static page: the two predictions side
by side, the words that differ marked), from the result of `src.analysis.compare.compare`."""

from __future__ import annotations

import difflib
import html

from src.metrics.significance import Interval
from src.system.outputs import markdown_table


def marked(words: list[str], other: list[str], left: bool, style: str) -> str:
    """`words` with the words not in `other` (by a word-level diff) marked: <mark> in HTML, **bold** in Markdown."""
    out = []
    matcher = difflib.SequenceMatcher(None, words, other, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        span = words[i1:i2] if left else other[j1:j2]
        if not span:
            continue
        text = " ".join(span)
        if style == "html":
            text = html.escape(text)
            out.append(text if op == "equal" else f"<mark>{text}</mark>")
        else:
            text = md_cell(text)
            out.append(text if op == "equal" else f"**{text}**")
    return " ".join(out)


def md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "<br>").replace("*", "\\*")


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; text-align: left; }
th { background: #f3f3f3; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
#examples td.text { max-width: 28em; }
mark { background: #ffe08a; }
tr.b-wins td.gap { color: #17702b; } tr.a-wins td.gap { color: #b3261e; }
#summary th { position: static; }
"""


def to_html(result: dict, limit: int) -> str:
    a, b, m = result["a"]["label"], result["b"]["label"], result["metric"]
    esc = html.escape
    summary = "\n".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in summary_lines(result))
    rows = []
    for e in result["examples"][:limit]:
        wa, wb = e["a"].split(), e["b"].split()
        kind = "b-wins" if e["gap"] > 1e-9 else "a-wins" if e["gap"] < -1e-9 else "tie"
        rows.append(
            f'<tr class="{kind}"><td class="num">{e["index"] + 1}</td>'
            f'<td class="num gap">{e["gap"]:+.1f}</td><td class="num">{e["score_a"]:.1f}</td>'
            f'<td class="num">{e["score_b"]:.1f}</td><td class="text">{esc(e["source"])}</td>'
            f'<td class="text">{esc(e["reference"])}</td><td class="text pred-a">{marked(wa, wb, True, "html")}</td>'
            f'<td class="text pred-b">{marked(wa, wb, False, "html")}</td></tr>'
        )
    shown = min(limit, result["examples_count"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(a)} vs {esc(b)}</title>
<style>{STYLE}</style></head>
<body>
<h1>{esc(a)} (A) vs {esc(b)} (B)</h1>
<table id="summary">
{summary}
</table>
<h2>Examples by gap, largest first ({shown} of {result["examples_count"]}; sentence {esc(m)}, 0-100;
words that differ between the predictions <mark>marked</mark>)</h2>
<table id="examples">
<thead><tr><th>#</th><th>B - A</th><th>A</th><th>B</th><th>source</th><th>reference</th>
<th>prediction A</th><th>prediction B</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>
</body></html>
"""


def _with_tested(label: str, tested: str | None) -> str:
    return f"{label} ({tested})" if tested else label


def summary_lines(result: dict) -> list[tuple[str, str]]:
    iv = Interval(**{k: v for k, v in result["bootstrap"].items() if k != "significant"})
    a, b, m, n = result["a"]["label"], result["b"]["label"], result["metric"], result["examples_count"]
    verdict = (
        f"B is {'better' if iv.delta > 0 else 'worse'}: the interval excludes 0"
        if iv.significant
        else "no significant difference: the interval includes 0"
    )
    return [
        ("A", _with_tested(a, result["a"].get("tested"))),
        ("B", _with_tested(b, result["b"].get("tested"))),
        (f"corpus {m} (A / B)", f"{result['corpus']['a']:.2f} / {result['corpus']['b']:.2f}"),
        (
            f"B - A, {100 * iv.confidence:.0f}% paired-bootstrap interval",
            f"{iv.delta:+.2f} [{iv.low:+.2f}, {iv.high:+.2f}] ({verdict}; p = {iv.p_value:.3f}, "
            f"{iv.resamples} resamples, seed {iv.seed})",
        ),
        (
            f"examples where B wins / ties / A wins (sentence {m})",
            f"{result['b_wins']} / {result['ties']} / {result['a_wins']} of {n}",
        ),
        ("identical predictions", f"{result['identical_predictions']} of {n}"),
    ]


def to_markdown(result: dict, limit: int) -> str:
    m = result["metric"]
    lines = [f"# {result['a']['label']} (A) vs {result['b']['label']} (B)", ""]
    lines += [markdown_table(["", ""], [[k, md_cell(v)] for k, v in summary_lines(result)]), ""]
    shown = result["examples"][:limit]
    lines += [
        f"## Examples by gap, largest first ({len(shown)} of {result['examples_count']}; sentence {m}, 0-100; "
        "words that differ between the predictions in **bold**)",
        "",
    ]
    rows = []
    for e in shown:
        wa, wb = e["a"].split(), e["b"].split()
        rows.append(
            [
                e["index"] + 1,
                f"{e['gap']:+.1f}",
                f"{e['score_a']:.1f}",
                f"{e['score_b']:.1f}",
                md_cell(e["source"]),
                md_cell(e["reference"]),
                marked(wa, wb, True, "md"),
                marked(wa, wb, False, "md"),
            ]
        )
    header = ["#", "B - A", "A", "B", "source", "reference", "prediction A", "prediction B"]
    lines.append(markdown_table(header, rows, "rrrrllll"))
    return "\n".join(lines) + "\n"
