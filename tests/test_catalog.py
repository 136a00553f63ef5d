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


PLUGIN = '''
from trickbag.catalog import Trick

TRICKS = [Trick("plugin_flood", "regularizer", "Flooding at b = 0.2, from an installed package.",
                "A plugin author. A Plugin Paper. 2026.", "trickbag.losses:flood", "trickbag.losses:Flooding",
                callback="trickbag.train.callbacks:Flooding", use="callback", defaults={"b": 0.2},
                card_file=__file__.replace("plugin_tricks.py", "plugin_flood.md"))]
'''


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A package on the path whose dist-info declares a trickbag.tricks entry point."""
    site = tmp_path / "site"
    (site / "plugin_tricks-0.1.dist-info").mkdir(parents=True)
    (site / "plugin_tricks-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: plugin-tricks\nVersion: 0.1\n")
    (site / "plugin_tricks-0.1.dist-info" / "entry_points.txt").write_text(
        "[trickbag.tricks]\nflood = plugin_tricks:TRICKS\nbroken = plugin_tricks:MISSING\n")
    (site / "plugin_tricks.py").write_text(PLUGIN)
    (site / "plugin_flood.md").write_text("# plugin_flood\n\nA card that lives with its package.\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(catalog, "_plugins_loaded", False)
    yield
    catalog.unregister("plugin_flood")


def test_an_installed_packages_tricks_join_the_catalog(installed_plugin, capsys):
    with pytest.warns(UserWarning, match="trick plugin 'broken' .* could not be loaded"):
        trick = catalog.get("plugin_flood")
    assert trick.defaults == {"b": 0.2} and "plugin_flood" in catalog.names()
    assert main(["list", "--kind", "regularizer"]) == 0
    assert "plugin_flood" in capsys.readouterr().out
    assert main(["show", "plugin_flood"]) == 0
    assert "A card that lives with its package." in capsys.readouterr().out
    from trickbag.testing import check_trick

    check_trick("plugin_flood")  # the built-in tricks' contracts, on the plugin's trick


def test_register_refuses_collisions_and_configless_uses():
    base = dict(kind="regularizer", summary="s", paper="A. B. 2026.", function="torch:randn", wrapper="torch:randn")
    with pytest.raises(ValueError, match="'flooding' is a built-in trick"):
        catalog.register(catalog.Trick("flooding", **base))
    with pytest.raises(ValueError, match="use='callback' needs callback="):
        catalog.register(catalog.Trick("mine", use="callback", **base))
    with pytest.raises(ValueError, match="'loss' tricks are trickbag's own registries"):
        catalog.register(catalog.Trick("mine", use="loss", **base))
    catalog.register(catalog.Trick("mine", **base))
    try:
        with pytest.raises(ValueError, match="registered already"):
            catalog.register(catalog.Trick("mine", **base))
        catalog.register(catalog.Trick("mine", **{**base, "summary": "t"}), replace=True)
        assert catalog.get("mine").summary == "t"
    finally:
        catalog.unregister("mine")
    with pytest.raises(ValueError, match="unknown trick 'mine'"):
        catalog.get("mine")
