"""Help and README: every command documents itself with a real example."""

from __future__ import annotations

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
