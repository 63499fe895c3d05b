"""Every ``§x.y`` that the code and the docs cite is a section of docs/algorithm.md, and nothing cites the
external spec the docstrings used to point at."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALGORITHM = ROOT / "docs" / "algorithm.md"
# "§1.1", and the items of a list that starts with one: "§1.1, 1.2, §2.2"
REFERENCE = re.compile(r"§(\d+(?:\.\d+)*)((?:,\s*§?\d+(?:\.\d+)*)*)")
HEADING = re.compile(r"^#+ §(\d+(?:\.\d+)*)\s", re.MULTILINE)
# The old name of the external spec, spelled in two pieces so that this line does not match itself.
STALE = re.compile(r"\bSP" + r"EC\b")
# The sections of the specification the code was written against keep their numbers and meaning.
SPEC_SECTIONS = {"0", "0.1", "0.2", "0.3", "1", "1.1", "1.2", "1.3", "2", "2.1", "2.2",
                 "3", "3.1", "3.2", "3.3", "3.4", "3.5", "3.6", "3.7", "4", "5", "6"}


def sources() -> list[Path]:
    """Every .py and .md file of the repository (hidden folders skipped)."""
    return sorted(p for p in ROOT.rglob("*") if p.suffix in (".py", ".md") and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(ROOT).parts))


def references(text: str) -> list[str]:
    found = []
    for match in REFERENCE.finditer(text):
        found.append(match.group(1))
        found += re.findall(r"\d+(?:\.\d+)*", match.group(2))
    return found


def sections() -> set[str]:
    return set(HEADING.findall(ALGORITHM.read_text(encoding="utf-8")))


def test_reference_parser():
    text = "see algorithm.md §1.1, 1.2, §2.2 and (§3.4); §7."
    assert references(text) == ["1.1", "1.2", "2.2", "3.4", "7"]


def test_algorithm_keeps_the_spec_numbering():
    numbers = sections()
    assert SPEC_SECTIONS <= numbers
    assert len(HEADING.findall(ALGORITHM.read_text(encoding="utf-8"))) == len(numbers), "a section number twice"


def test_every_cited_section_exists():
    numbers = sections()
    missing, count = [], 0
    for path in sources():
        for number in references(path.read_text(encoding="utf-8")):
            count += 1
            if number not in numbers:
                missing.append(f"{path.relative_to(ROOT)}: §{number}")
    assert missing == []
    assert count > 50  # the docstrings do cite the document


def test_no_reference_to_the_external_spec():
    stale = [f"{path.relative_to(ROOT)}:{n}" for path in sources()
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if STALE.search(line)]
    assert stale == []
