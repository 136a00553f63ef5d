"""One report style for every tool: a page written as Markdown and as HTML, PNGs beside it."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trickbag._atomic import write_text

__all__ = ["Page", "fmt"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #1f2328; line-height: 1.45; }
h1 { font-size: 1.6em; border-bottom: 1px solid #d0d7de; padding-bottom: .3em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #eaeef2; padding-bottom: .2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .92em; }
th, td { border: 1px solid #d0d7de; padding: .35em .7em; text-align: right; }
th { background: #f6f8fa; } td:first-child, th:first-child { text-align: left; }
tr.helps td { background: #e6f4ea; } tr.hurts td { background: #fdecea; }
img { max-width: 100%; border: 1px solid #eaeef2; margin: .5em 0; }
figure { margin: 1em 0; } figcaption { color: #57606a; font-size: .9em; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; font-size: .85em; }
.warn { background: #fff8c5; border-left: 4px solid #d4a72c; padding: .5em .8em; margin: .5em 0; }
.muted { color: #57606a; }
"""


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers with ``digits`` decimals where that shows them (0.9123), else with three
    significant digits (3.59e-05, 1.2e+05, never 0.0000); everything else as text.

    Example:
        >>> fmt(0.91234), fmt(3.59e-05), fmt(0.0), fmt(123456.0), fmt(-0.00042)
        ('0.9123', '3.59e-05', '0', '1.23e+05', '-0.00042')
    """
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value == 0:
            return "0"
        if abs(value) < 10 ** -(digits - 1) or abs(value) >= 1e4:
            return f"{value:.3g}"
        return f"{value:.{digits}f}"
    return str(value)


class Page:
    """Build a report block by block; :meth:`write` renders ``NAME.md`` and ``NAME.html``.

    Example:
        >>> import tempfile
        >>> page = Page("Demo")
        >>> page.heading("Table"); page.table(["arm", "acc"], [["baseline", 0.9]])
        >>> out = page.write(tempfile.mkdtemp())
        >>> sorted(p.name for p in out)
        ['report.html', 'report.md']
    """

    def __init__(self, title: str):
        self.title = title
        self.blocks: list[tuple[str, Any]] = []

    def heading(self, text: str) -> None:
        self.blocks.append(("h2", text))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("p", text))

    def warning(self, text: str) -> None:
        self.blocks.append(("warn", text))

    def bullets(self, items: Sequence[str]) -> None:
        self.blocks.append(("ul", list(items)))

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]], row_classes: Sequence[str] | None = None) -> None:
        self.blocks.append(("table", (list(headers), [list(r) for r in rows], list(row_classes or []))))

    def image(self, filename: str, caption: str = "") -> None:
        self.blocks.append(("img", (filename, caption)))

    def code(self, text: str, language: str = "") -> None:
        self.blocks.append(("pre", (text, language)))

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, value in self.blocks:
            if kind == "h2":
                out += [f"## {value}", ""]
            elif kind == "p":
                out += [value, ""]
            elif kind == "warn":
                out += [f"> **Warning:** {value}", ""]
            elif kind == "ul":
                out += [f"- {v}" for v in value] + [""]
            elif kind == "table":
                headers, rows, _ = value
                out.append("| " + " | ".join(headers) + " |")
                out.append("|" + "|".join(" --- " for _ in headers) + "|")
                out += ["| " + " | ".join(fmt(c).replace("|", "\\|") for c in row) + " |" for row in rows]
                out.append("")
            elif kind == "img":
                name, caption = value
                out += [f"![{caption or name}]({name})", ""]
                if caption:
                    out += [f"*{caption}*", ""]
            elif kind == "pre":
                text, lang = value
                out += [f"```{lang}", text.rstrip(), "```", ""]
        return "\n".join(out)

    def html(self) -> str:
        e = html.escape
        body = [f"<h1>{e(self.title)}</h1>"]
        for kind, value in self.blocks:
            if kind == "h2":
                body.append(f"<h2>{e(value)}</h2>")
            elif kind == "p":
                body.append(f"<p>{e(value)}</p>")
            elif kind == "warn":
                body.append(f'<div class="warn">{e(value)}</div>')
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{e(v)}</li>" for v in value) + "</ul>")
            elif kind == "table":
                headers, rows, classes = value
                head = "".join(f"<th>{e(h)}</th>" for h in headers)
                trs = []
                for i, row in enumerate(rows):
                    cls = f' class="{e(classes[i])}"' if i < len(classes) and classes[i] else ""
                    trs.append(f"<tr{cls}>" + "".join(f"<td>{e(fmt(c))}</td>" for c in row) + "</tr>")
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(trs)}</tbody></table>")
            elif kind == "img":
                name, caption = value
                cap = f"<figcaption>{e(caption)}</figcaption>" if caption else ""
                body.append(f'<figure><img src="{e(name)}" alt="{e(caption or name)}">{cap}</figure>')
            elif kind == "pre":
                body.append(f"<pre>{e(value[0])}</pre>")
        return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(self.title)}</title>'
                f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")

    def write(self, directory: str | Path, name: str = "report") -> list[Path]:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        md, page = directory / f"{name}.md", directory / f"{name}.html"
        write_text(md, self.markdown())  # atomically: a kill or a full disk never leaves half a report
        write_text(page, self.html())
        return [md, page]
