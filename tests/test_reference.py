"""The command reference and the man page are generated from the CLI's own
declarations (jobctl/reference.py); the committed copies must be what it
generates now, so a changed option cannot leave them behind."""

from __future__ import annotations

import difflib
from pathlib import Path

from jobctl import reference

ROOT = Path(__file__).resolve().parent.parent


def test_committed_reference_and_man_page_are_what_the_cli_declares():
    for relative, text in reference.generated().items():
        path = ROOT / relative
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            diff = "".join(difflib.unified_diff(current.splitlines(True), text.splitlines(True),
                                                f"{relative} (committed)", f"{relative} (generated)", n=1))
            raise AssertionError(f"{relative} is stale: run `.venv/bin/python -m jobctl.reference --write`"
                                 f"\n{diff[:4000]}")


def test_every_command_and_option_is_in_the_reference():
    from typer._click import Context
    from typer.main import get_group

    from jobctl.cli import app

    text = reference.markdown()
    group = get_group(app)
    ctx = Context(group, info_name="jobctl")
    for name in group.commands:
        assert f"## jobctl {name}\n" in text, name
        command = group.get_command(ctx, name)
        for param in command.params:
            if param.param_type_name == "option" and not param.hidden:
                assert max(param.opts, key=len) in text, (name, param.opts)


def test_man_page_is_roff_with_every_section():
    page = reference.manpage()
    assert page.startswith('.\\" Generated')
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "GLOBAL OPTIONS", "COMMANDS", "EXIT STATUS",
                    "ENVIRONMENT", "FILES", "SEE ALSO"):
        assert f"\n.SH {section}\n" in page, section
    # a line of text that starts with a dot would be read as a request
    assert all(not line.startswith(".") or line[:3] in (".TH", ".SH", ".SS", ".TP", ".PP", '.\\"')
               for line in page.splitlines())


def test_man_page_renders_without_a_warning_where_groff_is_installed():
    import shutil
    import subprocess

    import pytest

    if not shutil.which("groff"):
        pytest.skip("groff is not installed (the roff is still checked above)")
    result = subprocess.run(["groff", "-man", "-ww", "-z"], input=reference.manpage(), text=True,
                            capture_output=True, timeout=60)
    assert result.returncode == 0 and not result.stderr, result.stderr
