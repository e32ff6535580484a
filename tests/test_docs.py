"""The front door holds: every relative link in README.md and docs/ resolves (file and anchor),
and every make target the README names exists in the Makefile."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "results").glob("**/*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def github_anchor(heading: str) -> str:
    """GitHub's heading slug: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        if m := re.match(r"#{1,6} (.+)", line):
            slug = github_anchor(m.group(1))
            n = seen.get(slug, 0)
            out.add(slug if n == 0 else f"{slug}-{n}")
            seen[slug] = n + 1
    return out


def relative_links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text())
    links = [a or b for a, b in LINK.findall(text)]
    return [link for link in links if not re.match(r"[a-z]+:", link)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for link in relative_links(page):
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            broken.append(f"{link} (no file {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path})")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{link} (no heading #{anchor} in {path.name})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {broken}"


def readme_make_targets() -> set[str]:
    text = (ROOT / "README.md").read_text()
    code = " ".join(re.findall(r"`([^`\n]+)`", FENCE.sub("", text)) + FENCE.findall(text))
    return set(re.findall(r"(?:^|[\s;(])make ([a-z][\w-]*)", code, re.M))


def test_readme_names_make_targets_that_exist():
    targets = readme_make_targets()
    assert {"demo", "test", "table1"} <= targets  # the parser sees the README's commands
    missing = [t for t in sorted(targets)
               if subprocess.run(["make", "-n", "-C", str(ROOT), t], capture_output=True).returncode != 0]
    assert not missing, f"README names make targets the Makefile lacks: {missing}"


def test_the_anchor_rule_matches_github():
    assert github_anchor("Output files (`reports/<task>/<model>/`)") == "output-files-reportstaskmodel"
    assert github_anchor("The L1 penalty (`active_lt`, `random_lt`)") == "the-l1-penalty-active_lt-random_lt"


def makefile_targets() -> set[str]:
    """Every target a rule of the Makefile names ($(SWEEPS) expanded; .PHONY and files aside)."""
    text = (ROOT / "Makefile").read_text()
    sweeps = re.search(r"^SWEEPS := (.+)$", text, re.M).group(1).split()
    heads = " ".join(re.findall(r"^([^\s#=:][^=:\n]*):(?!=)", text, re.M)).split()
    names = {t for head in heads for t in (sweeps if head == "$(SWEEPS)" else [head])}
    return {t for t in names if not t.startswith((".", "$"))}


def test_make_help_lists_every_target():
    targets = makefile_targets()
    assert {"demo", "test", "mechanism", "test-fast", "clean", "table1_minilm", "other_tasks"} <= targets
    shown = set(re.findall(r"[\w-]+", subprocess.run(["make", "-s", "-C", str(ROOT), "help"], capture_output=True,
                                                      text=True, check=True).stdout))
    assert not targets - {"help"} - shown, f"make help omits {sorted(targets - {'help'} - shown)}"
