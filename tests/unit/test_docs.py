"""The README and the manual in docs/: every relative link leads to a file, and to a heading there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

PAGES = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
README_MAX_LINES = 200
PAGES_WITHOUT_LINKS = {"parameters.md"}  # generated from the declarations (flow_steps/config/render.py)


def without_fences(text: str) -> str:
    """The text without its fenced code blocks (whose `#` lines are comments, not headings)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def outside_code(text: str) -> str:
    """The text without code: fenced blocks and inline spans."""
    return re.sub(r"`[^`\n]*`", "", without_fences(text))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {
        slug(line.lstrip("#")) for line in outside_code(page.read_text()).splitlines() if line.startswith("#")
    }


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(PROJECT_ROOT).as_posix())
def test_every_relative_link_resolves(page):
    checked = 0
    for target in LINK.findall(outside_code(page.read_text())):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto: not checked here (no network in tests)
        checked += 1
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target} does not exist"
        if anchor:
            assert anchor in anchors(linked), f"{page.name}: {target} names no heading of {linked.name}"
    # A page the finder saw no link in proves nothing: only the generated parameter table has none.
    assert checked or page.name in PAGES_WITHOUT_LINKS, f"{page.name}: no relative link found"


def test_the_readme_stays_short():
    assert len((PROJECT_ROOT / "README.md").read_text().splitlines()) <= README_MAX_LINES
