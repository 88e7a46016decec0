"""Help and README: every command documents itself with a real example."""

from __future__ import annotations

import re
from pathlib import Path

from jobctl.cli import app, db_app

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def commands():
    for typer_app in (app, db_app):
        for info in typer_app.registered_commands:
            yield info.name or info.callback.__name__, info.callback


def test_every_command_has_a_summary_and_an_example():
    for name, callback in commands():
        doc = callback.__doc__ or ""
        assert doc.strip(), f"{name} has no docstring"
        examples = [line for line in doc.splitlines() if line.strip().startswith("Example:")]
        assert examples and "jobctl " in examples[0], f"{name} docstring lacks an 'Example: ... jobctl ...' line"


def test_readme_walks_through_every_command_and_exit_code():
    for command in ("submit", "status", "list", "stats", "cleanup", "wait", "cancel", "describe", "db init"):
        assert f"jobctl {command}" in README, command
    for code in ("| 0 ", "| 1 ", "| 2 ", "| 3 ", "| 4 ", "| 5 ", "| 130 "):
        assert code in README, code


ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: pages other branches write (issue 26 splits the README while they are under way);
#: a link to them is accepted while they are missing here, never once they exist
PROMISED = {"docs/procedures.md", "docs/types.md", "docs/oracle-types.md", "docs/oracle-sessions.md",
            "docs/serve.md"}


def _outside_fences(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(m) for m in re.findall(r"^#+ (.*)$", _outside_fences(path.read_text()), flags=re.M)}


def test_readme_stays_short():
    assert len(README.splitlines()) <= 320, "the README is the five-minute page: move detail to docs/"


def test_every_link_between_the_docs_reaches_a_page_and_a_heading():
    broken = []
    for doc in DOCUMENTS:
        for target in re.findall(r"\]\(([^)\s]+)\)", _outside_fences(doc.read_text())):
            if re.match(r"[a-z]+:", target):
                continue
            file_part, _, anchor = target.partition("#")
            page = (doc.parent / file_part).resolve() if file_part else doc
            relative = page.relative_to(ROOT).as_posix() if page.is_relative_to(ROOT) else str(page)
            if not page.exists():
                if relative not in PROMISED:
                    broken.append(f"{doc.relative_to(ROOT)}: {target} (no such file)")
                continue
            if anchor and page.suffix == ".md" and anchor not in _anchors(page):
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_ci_runs_the_test_command_the_readme_gives():
    ci = (ROOT / ".ci" / "run").read_text()
    command = ".venv/bin/python -m pytest"
    assert f"\n   {command}\n" in README, "the README's second set-up command"
    assert ci.rstrip().endswith(f"\n{command}"), ".ci/run must run exactly the README's test command"
