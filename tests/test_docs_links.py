"""The documentation points at things that exist, and the README stays a manual.

- every relative link (`[text](path)` or `![alt](path)` without a scheme, anchors included) in README.md,
  docs/*.md, data/README.md, notebooks/README.md and reports/README.md resolves;
- every `docs/...` path and every README section (its title in double quotes after the word README) that
  those documents and the docstrings and comments of src/synseg, configs, tests, benchmarks, scripts and the
  Makefile mention exists (a page may be named without its `.md`);
- the repository paths, `synseg.*` names and test names the documents quote in backticks exist; the README's
  config-group list is configs/'s options, and its layout names files that exist;
- README.md has at most 15,000 characters;
- every data file under docs/results/ is linked from docs/results.md, says where its numbers come from,
  and its methods' mean mIoU appear in docs/results.md (and the README's results table agrees with
  docs/results/compare_toy.json).

File reads only (no subprocess, no project import): fast."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_LIMIT = 15_000
DOCUMENTS = sorted(
    p.relative_to(ROOT).as_posix()
    for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "data").glob("README.md"),
              *(ROOT / "notebooks").glob("README.md"), *(ROOT / "reports").glob("README.md")]
)  # fmt: skip
CODE = sorted(
    p.relative_to(ROOT).as_posix()
    for pattern in ("src/synseg/**/*.py", "configs/**/*.yaml", "tests/**/*.py", "benchmarks/*", "scripts/*")
    for p in ROOT.glob(pattern)
    if p.is_file() and "__pycache__" not in p.parts
) + ["Makefile"]
RESULTS = ROOT / "docs" / "results"

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
DOCS_PATH = re.compile(r"(?<![\w/.-])docs/[\w./-]*")
README_SECTION = re.compile(r"README \"([^\"]+)\"")
REPO_PATH = re.compile(r"`((?:src|configs|tests|scripts|benchmarks|notebooks|docs)/[^`\s]*)`")
DOTTED = re.compile(r"`(synseg(?:\.\w+)+)`")
TEST_REF = re.compile(r"`(test_\w+\.py)?(?:::(\w+))?`")
PLACEHOLDER = re.compile(r"[<>*{}]|\.\.\.|…")


def text_of(path: str) -> str:
    return (ROOT / path).read_text(encoding="utf-8")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]{2,}|`", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"(?m)^#{1,6}\s+(.+?)\s*#*\s*$", path.read_text(encoding="utf-8"))}


def headings(path: Path) -> list[str]:
    return re.findall(r"(?m)^#{1,6}\s+(.+?)\s*$", path.read_text(encoding="utf-8"))


def section(text: str, title: str) -> str:
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 3)
    return text[start : end if end != -1 else None]


def doc_path_exists(path: str) -> bool:
    path = path.rstrip(".,;:")
    return (ROOT / path).exists() or (ROOT / f"{path}.md").is_file()


def test_the_readme_is_a_manual_of_at_most_15000_characters() -> None:
    text = text_of("README.md")
    assert len(text) <= README_LIMIT, f"README.md has {len(text)} characters; move details into docs/"
    assert "[docs/results.md](docs/results.md)" in text


@pytest.mark.parametrize("document", DOCUMENTS)
def test_relative_links_resolve(document: str) -> None:
    base = (ROOT / document).parent
    broken = []
    for target in LINK.findall(text_of(document)):
        if SCHEME.match(target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (base / path) if path else ROOT / document
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with anchor #{anchor}")
    assert not broken, f"{document}: {broken}"


@pytest.mark.parametrize("path", DOCUMENTS + CODE)
def test_docs_paths_and_readme_sections_exist(path: str) -> None:
    text = text_of(path)
    missing = [p for p in DOCS_PATH.findall(text) if not PLACEHOLDER.search(p) and not doc_path_exists(p)]
    titles = headings(ROOT / "README.md")
    missing += [
        f'README "{s}"'
        for s in README_SECTION.findall(text)
        if not PLACEHOLDER.search(s) and not any(t.startswith(s) for t in titles)
    ]
    assert not missing, f"{path} mentions {missing}"


@pytest.mark.parametrize("document", DOCUMENTS)
def test_quoted_repository_paths_and_names_exist(document: str) -> None:
    text = text_of(document)
    missing = [p for p in REPO_PATH.findall(text) if not PLACEHOLDER.search(p) and not (ROOT / p).exists()]
    for name in DOTTED.findall(text):
        parts, where = name.split("."), ROOT / "src"
        while parts and ((where / parts[0]).is_dir() or (where / f"{parts[0]}.py").is_file()):
            where = where / parts.pop(0)
        module = where / "__init__.py" if where.is_dir() else where.with_suffix(".py")
        if where == ROOT / "src" or (parts and not re.search(rf"\b{parts[0]}\b", module.read_text())):
            missing.append(name)
    test_file = None
    for file, function in TEST_REF.findall(text):
        test_file = file or test_file
        if file and not (ROOT / "tests" / file).is_file():
            missing.append(file)
        elif function and test_file and f"def {function}(" not in text_of(f"tests/{test_file}"):
            missing.append(f"{test_file}::{function}")
    assert not missing, f"{document} quotes {missing}"


def test_the_readme_config_groups_are_the_options_in_configs() -> None:
    block = re.search(
        r"```text\n(.*?)```", section(text_of("README.md"), "Configs and switches"), re.S
    ).group(1)
    listed = {}
    for line in block.splitlines():
        group, _, options = line.split("#")[0].partition(":")
        listed[group.strip()] = set(options.split())
    on_disk = {
        d.name: {p.stem for p in d.glob("*.yaml") if not p.stem.startswith("_")}
        for d in (ROOT / "configs").iterdir()
        if d.is_dir()
    }
    assert listed == on_disk


def test_the_readme_layout_names_files_that_exist() -> None:
    block = re.search(r"```text\n(.*?)```", section(text_of("README.md"), "Layout"), re.S).group(1)
    package = ROOT / "src" / "synseg"
    files = {p.name for p in package.rglob("*.py")}
    dirs = {p.name for p in package.rglob("*") if p.is_dir()} | {"synseg"}
    missing = [w for w in re.findall(r"[\w.]+\.py\b", block) if w not in files]
    missing += [w for w in re.findall(r"([\w]+)/", block) if w not in dirs and w != "src"]
    assert not missing, f"README layout names {missing}, not under src/synseg"


DATA_FILES = sorted(p.name for p in RESULTS.iterdir()) if RESULTS.is_dir() else []


def test_every_result_data_file_is_shown_in_results_md() -> None:
    linked = set(re.findall(r"\]\(results/([^)#]+)\)", text_of("docs/results.md")))
    assert DATA_FILES and set(DATA_FILES) <= linked, (
        f"not linked from docs/results.md: {set(DATA_FILES) - linked}"
    )


@pytest.mark.parametrize("name", [n for n in DATA_FILES if n.endswith(".json")])
def test_result_data_file_backs_its_table(name: str) -> None:
    data = json.loads((RESULTS / name).read_text())
    if "config" in data and "methods" in data and "source" not in data:  # a report's own results.json
        data["source"] = "results.json"
    assert data.get("source"), f"{name}: say where the numbers come from (a `source` field)"
    assert data.get("command") or data.get("commands") or data.get("config"), f"{name}: which command"
    results_md = text_of("docs/results.md")
    for method, row in data.get("methods", {}).items():
        mean = row.get("mIoU_mean")
        if mean is not None:
            assert f"{mean:.3f}" in results_md, f"{name}: {method} mIoU {mean:.3f} is not in docs/results.md"


def test_the_readme_results_table_agrees_with_compare_toy() -> None:
    data = json.loads((RESULTS / "compare_toy.json").read_text())
    methods, ood = data["methods"], data["other_datasets"]["toy_ood"]["methods"]
    rows = re.findall(
        r"(?m)^\| (\w+)[^|]*\| [\w-]+ \| \**([\d.]+) ± ([\d.]+)\** \| \**([\d.]+)\** \|$",
        section(text_of("README.md"), "Results"),
    )
    assert {r[0] for r in rows} == set(methods)
    for method, mean, std, ood_mean in rows:
        expected = (f"{methods[method]['mIoU_mean']:.3f}", f"{methods[method]['mIoU_std']:.3f}")
        assert (mean, std) == expected, method
        assert ood_mean == f"{ood[method]['mIoU_mean']:.3f}", method
