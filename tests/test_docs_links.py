"""Every relative link in the docs leads somewhere: the file exists and, for a ``#fragment`` into a Markdown file,
that file has a heading with GitHub's anchor for it. Every page under docs/ is reachable from the README. Every test
the ledgers (docs/claims.md, RELIABILITY.md) cite exists."""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", ROOT / "ARCHITECTURE.md", ROOT / "RELIABILITY.md", ROOT / "BENCHMARKS.md",
                *ROOT.glob("docs/*.md"),
                *ROOT.glob("examples/*.md")])
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", flags=re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+).+?\1")


def _prose(text):
    """The text links are read from: fenced blocks and code spans removed (a ``[x](y)`` there is not a link)."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def anchors(path):
    """GitHub's anchors for a Markdown file's headings: lower case, punctuation dropped, spaces to hyphens,
    repeats numbered ``-1``, ``-2``."""
    seen, found = {}, set()
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def broken_links(path):
    """The relative links of ``path`` that lead nowhere, each as ``target: why``."""
    broken = []
    for target in LINK.findall(_prose(path.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file, _, fragment = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{target}: no heading with that anchor")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_a_broken_link_or_anchor_is_found(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## SRe2L on PyTorch ≥ 2.6\n")
    page = tmp_path / "page.md"
    page.write_text("# Page\n[ok](other.md#sre2l-on-pytorch--26) [self](#page) `[code](missing.md)`\n"
                    "[gone](missing.md) [no anchor](other.md#nowhere) [ext](https://example.com/x.md)\n"
                    "```\n[in a block](missing-too.md)\n```\n")
    assert broken_links(page) == ["missing.md: no such file", "other.md#nowhere: no heading with that anchor"]


def test_every_docs_page_is_reachable_from_the_readme():
    reached, todo = set(), [ROOT / "README.md"]
    while todo:
        page = todo.pop()
        if page in reached:
            continue
        reached.add(page)
        for target in LINK.findall(_prose(page.read_text(encoding="utf-8"))):
            dest = (page.parent / target.partition("#")[0]).resolve()
            if dest.suffix == ".md" and dest.is_file() and ROOT in dest.parents:
                todo.append(dest)
    assert sorted(p.name for p in ROOT.glob("docs/*.md") if p.resolve() not in reached) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_table_is_cut_in_two_by_a_blank_line(page):
    """A blank line inside a table ends it: the rows after it render as a paragraph of pipes."""
    lines = FENCE.sub("", page.read_text(encoding="utf-8")).split("\n")
    cut = [i + 1 for i in range(1, len(lines) - 1)
           if not lines[i].strip() and lines[i - 1].startswith("|") and lines[i + 1].startswith("|")
           and not re.match(r"\|[\s:|-]+\|\s*$", lines[i + 2] if i + 2 < len(lines) else "")]
    assert cut == [], f"blank line at line(s) {cut} inside a table"


LEDGERS = [ROOT / "docs" / "claims.md", ROOT / "RELIABILITY.md"]
CITED = re.compile(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`|`…::(\w+)`")


def cited_tests(text):
    """``(file, name)`` for each test cited in ``text``; ``::name`` and ``…::name`` are in the last file named
    before them (name None: the whole file)."""
    cited, last = [], None
    for file, name, elided in CITED.findall(text):
        last = file or last
        if file or name or elided:
            cited.append((last, name or elided or None))
    return cited


def missing_tests(text):
    """The cited tests that are not defined (``file::name``, or the file alone)."""
    missing = []
    for file, name in cited_tests(text):
        path = ROOT / file if file else None
        if path is None or not path.is_file():
            missing.append(f"{file}::{name}")
        elif name and name not in {n.name for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                                   if isinstance(n, ast.FunctionDef)}:
            missing.append(f"{file}::{name}")
    return missing


@pytest.mark.parametrize("ledger", LEDGERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_test_the_ledgers_cite_exists(ledger):
    text = ledger.read_text(encoding="utf-8")
    assert len(cited_tests(text)) > 20
    assert missing_tests(text) == []


def test_a_missing_test_or_file_is_found():
    text = ("`tests/test_docs_links.py::test_a_missing_test_or_file_is_found`, `::no_such_test`, `…::anchors`; "
            "`tests/no_such_file.py`")
    assert missing_tests(text) == ["tests/test_docs_links.py::no_such_test", "tests/no_such_file.py::None"]
