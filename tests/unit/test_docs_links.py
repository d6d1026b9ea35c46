"""Every relative link in the README and docs/ points at a file that exists, and every ``#anchor`` at one of its
headings (GitHub's slugs), so moving text between pages cannot leave a dead link behind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted(
    [
        ROOT / "README.md",
        ROOT / "CHANGELOG.md",
        ROOT / "my_dags" / "README.md",
        *(ROOT / "docs").rglob("*.md"),
    ]
)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """The text outside fenced code blocks and inline code."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (but - and _), spaces to -."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    headings = re.findall(r"^#+ (.+)$", re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M), re.M)
    explicit = re.findall(r'<a (?:id|name)="([^"]+)"', page.read_text())  # <a id="..."></a> anchors
    return {slug(h) for h in headings} | set(explicit)


def test_slugs_follow_github():
    assert slug("Performance (measured on a 2-core, 24 GB VM; compare ratios, not absolute rows/s)") == (
        "performance-measured-on-a-2-core-24-gb-vm-compare-ratios-not-absolute-rowss"
    )
    assert slug("`fail_on` (operator)") == "fail_on-operator"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(_prose(page.read_text())):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading '#{anchor}' in {dest.relative_to(ROOT)}")
    assert not broken, broken


def test_the_readme_first_screen_onboards():
    """What a new user needs is on the README's first screen (its first 60 lines), and the long specification
    lives in docs/ (the README stays short)."""
    text = (ROOT / "README.md").read_text()
    first = "\n".join(text.splitlines()[:60])
    for needed in ("pip install /path/to/airflow-batch-provider", "pip wheel", "[amazon]", "make demo", "make test",
                   "my_dags/", "make airflow DAGS=my_dags"):  # fmt: skip
        assert needed in first, needed
    assert "# my_dags/my_first_dag.py" in text and len(text) < 9_000
