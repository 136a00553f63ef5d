"""Contract tests over the whole trick catalog: code, wrapper, card, paper and doctest."""

from __future__ import annotations

import doctest
import re

import pytest

from trickbag import catalog
from trickbag.cli import main

SECTIONS = ("## What it does", "## Formula", "## When it helps", "## When it hurts",
            "## Suggested values", "## Paper", "## Example")
NAMES = [t.name for t in catalog.TRICKS]


@pytest.mark.parametrize("name", NAMES)
def test_entry_has_function_wrapper_and_reference(name):
    trick = catalog.get(name)
    assert trick.kind in catalog.KINDS
    assert callable(trick.load_function()), trick.function
    assert callable(trick.load_wrapper()), trick.wrapper
    assert len(trick.paper) > 20 and re.search(r"(19|20)\d\d", trick.paper), trick.paper
    assert "\n" not in trick.summary and len(trick.summary) <= 100


@pytest.mark.parametrize("name", NAMES)
def test_card_has_every_section_and_its_example_runs(name):
    path = catalog.card_path(name)
    assert path.exists(), f"missing method card {path}"
    text = path.read_text(encoding="utf-8")
    assert text.startswith(f"# {name}\n")
    positions = [text.find(s) for s in SECTIONS]
    assert all(p >= 0 for p in positions), [s for s, p in zip(SECTIONS, positions) if p < 0]
    assert positions == sorted(positions), "sections out of order"
    for image in re.findall(r"\]\((img/[^)]+)\)", text):
        assert (path.parent / image).exists(), image
    # Run the card's example as a doctest (code fences removed).
    body = "\n".join(line for line in text.splitlines() if not line.startswith("```"))
    test = doctest.DocTestParser().get_doctest(body, {}, name, str(path), 0)
    assert test.examples, "the example section has no doctest"
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_every_card_file_belongs_to_an_entry():
    files = {p.stem for p in catalog.CARDS_DIR.glob("*.md")}
    assert files - set(NAMES) == set(), "cards without catalog entries"


def test_unknown_name_suggests_the_closest():
    with pytest.raises(ValueError, match=r"unknown trick 'focal'.*'focal_loss'"):
        catalog.get("focal")
    with pytest.raises(ValueError, match="unknown kind 'losses'.*'loss'"):
        catalog.by_kind("losses")


def test_cli_list_prints_the_catalog(capsys):
    assert main(["list", "--kind", "schedule"]) == 0
    out = capsys.readouterr().out
    assert "cosine_decay" in out and "focal_loss" not in out
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in NAMES)


def test_cli_show_prints_the_card_and_rejects_unknown_names(capsys):
    assert main(["show", "flooding"]) == 0
    assert "|J - b| + b" in capsys.readouterr().out
    assert main(["show", "floding"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'flooding'" in err


def test_the_readme_catalog_table_names_every_trick():
    """README's catalog table changes with the catalog: every entry is listed under its kind."""
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| (\w+) \| (.+) \|$", readme, flags=re.M))
    for trick in catalog.TRICKS:
        assert trick.kind in rows, f"README's catalog table has no row for kind {trick.kind!r}"
        assert re.search(rf"\b{trick.name}\b", rows[trick.kind]), f"README's {trick.kind} row lacks {trick.name}"
