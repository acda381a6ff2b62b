"""Files the docs quote whole are the files: a ``<!-- quoted: PATH -->`` line is followed by a fenced block that must
equal ``PATH`` (so whoever changes the file, or the quote, changes the other too)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUOTE = re.compile(r"^<!-- quoted: (?P<path>\S+) -->\n```[a-z]*\n(?P<body>.*?)^```$", re.M | re.S)
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])


def _quotes() -> list[tuple[str, str, str]]:
    return [(doc.relative_to(ROOT).as_posix(), m["path"], m["body"])
            for doc in DOCS for m in QUOTE.finditer(doc.read_text())]


def test_the_readme_quotes_the_quickstart_recipe():
    assert ("README.md", "studies/quickstart.yaml") in [(doc, path) for doc, path, _ in _quotes()]


def test_every_marker_opens_a_fenced_block():
    for doc in DOCS:
        markers = doc.read_text().count("<!-- quoted: ")
        assert markers == len([q for q in _quotes() if q[0] == doc.relative_to(ROOT).as_posix()]), doc


@pytest.mark.parametrize("doc, path, body", _quotes(), ids=lambda v: v if "\n" not in str(v) else "")
def test_a_quoted_file_is_quoted_exactly(doc, path, body):
    assert body == (ROOT / path).read_text(), f"{doc} quotes {path}, but the file differs: update one of them"
