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


# --- README as a user guide, and the docs it links -------------------------------------------------------------

README = ROOT / "README.md"
# Commit hashes as people paste them (7-12 hex digits, or all 40); md5 (32) and sha256 (64) sums are not these,
# nor the hash part of torchvision's file names (resnet101-63fe2227.pth).
COMMIT_HASH = re.compile(r"(?<![\w-])(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])(?:[0-9a-f]{7,12}|[0-9a-f]{40})(?!\w)")
DIARY = ("this machine", "earlier machine", "another machine", "target is met", "targets are met", "is missed")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_commit_hash_pattern():
    assert COMMIT_HASH.findall("at ed2fa4d and 01c63ed, full 1d2afe9e5c0f3b2a4d6e8f0a1b2c3d4e5f6a7b8c") == [
        "ed2fa4d", "01c63ed", "1d2afe9e5c0f3b2a4d6e8f0a1b2c3d4e5f6a7b8c"]
    not_hashes = "md5 ff21f45d6bf03284100dcbec571edfad, 2026_000020, 1000000, resnet101-63fe2227.pth, zhang2021affinity"
    assert COMMIT_HASH.findall(not_hashes) == []


def test_readme_is_a_short_user_guide():
    text = README.read_text(encoding="utf-8")
    assert len(text) <= 12_000, f"README.md has {len(text)} characters; move details to docs/"
    assert COMMIT_HASH.findall(text) == []
    assert [phrase for phrase in DIARY if phrase in text.lower()] == []


def test_measurement_docs_have_no_commit_hashes():
    for path in (ROOT / "docs" / "results.md", ROOT / "docs" / "voc.md", ROOT / "benchmarks" / "README.md"):
        assert COMMIT_HASH.findall(path.read_text(encoding="utf-8")) == [], path


def test_relative_links_of_the_docs_exist():
    missing = []
    for path in [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]:
        for target in LINK.findall(path.read_text(encoding="utf-8")):
            if "://" not in target and not (path.parent / target).exists():
                missing.append(f"{path.relative_to(ROOT)} -> {target}")
    assert missing == []


def code_block_after(text: str, heading: str) -> list[str]:
    """The lines of the first code block after ``heading``."""
    section = text[text.index(heading):]
    return re.search(r"^```[^\n]*\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL).group(1).splitlines()


def test_ci_runs_the_readme_test_commands():
    readme = code_block_after(README.read_text(encoding="utf-8"), "## Test")
    ci = [line for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
          if line.startswith("python ")]
    assert ci == readme


def requirement_lines(path: Path) -> list[str]:
    lines = [line.split("#")[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line]


def test_requirements_split_runtime_from_dev():
    import tomllib

    runtime = requirement_lines(ROOT / "requirements.txt")
    dev = requirement_lines(ROOT / "requirements-dev.txt")
    assert not any(re.match(r"(pytest|ruff|imgviz|tensorboard)\b", line) for line in runtime)
    assert dev[0] == "-r requirements.txt" and any(line.startswith("pytest") for line in dev)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["dependencies"] == runtime, "pyproject.toml [project] dependencies must equal requirements.txt"
    assert project["optional-dependencies"]["dev"] == dev[1:]
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
