"""The module graph reads one way: the layers table of ARCHITECTURE.md is the
rule, and this test reads every import in jobctl/ (lazy ones in functions
too) against it. A module imports only modules of its own layer or below,
no import circle exists, no module reaches for another module's private
names, and every module of jobctl/ has a place in the table (a new file
comes with a line in ARCHITECTURE.md, so the document stays true)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "jobctl"
ARCHITECTURE = ROOT / "ARCHITECTURE.md"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def layers() -> list[list[str]]:
    """The rows of the table under '## Layers', top layer first: each row's
    last cell names modules (`jobctl.x`) or packages (`jobctl.x.*`)."""
    text = ARCHITECTURE.read_text()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not line.lstrip().startswith("|"):
            continue
        names = re.findall(r"`(jobctl(?:\.[a-z_]+)*(?:\.\*)?)`", cells[-1])
        if names:
            rows.append(names)
    return rows


def rank_of(module: str, table: list[list[str]]) -> int | None:
    """Higher is further up; the most specific pattern wins."""
    best: tuple[int, int] | None = None
    for index, names in enumerate(table):
        for name in names:
            if name.endswith(".*"):
                base = name[:-2]
                hit = module == base or module.startswith(base + ".")
                weight = len(base)
            else:
                hit = module == name
                weight = len(name) + 1000
            if hit and (best is None or weight > best[0]):
                best = (weight, len(table) - index)
    return best[1] if best else None


def imports_of(module: str, path: Path, known: set[str]) -> list[tuple[str, int, list[str]]]:
    """(imported jobctl module, line, names taken from it) for every import."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    here = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "jobctl":
                    found.append((alias.name, node.lineno, []))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "jobctl":
                continue
            names = [a.name for a in node.names]
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
            for sub in submodules:
                found.append((sub, node.lineno, []))
            rest = [n for n in names if f"{target}.{n}" not in known]
            if rest or not submodules:
                found.append((target, node.lineno, rest))
    return found


def graph() -> dict[str, list[tuple[str, int, list[str]]]]:
    modules = all_modules()
    known = set(modules)
    return {m: imports_of(m, p, known) for m, p in modules.items()}


def test_every_module_has_a_layer_in_architecture_md():
    table = layers()
    assert table, "ARCHITECTURE.md has no '## Layers' table"
    missing = sorted(m for m in all_modules() if rank_of(m, table) is None)
    assert not missing, f"modules without a layer in ARCHITECTURE.md: {missing}"


def test_no_import_runs_upward():
    table = layers()
    upward = []
    for module, imported in graph().items():
        mine = rank_of(module, table)
        for target, line, _ in imported:
            theirs = rank_of(target, table)
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(f"{module}:{line} imports {target}")
    settle("imports that run upward", upward)


def test_no_import_circle():
    edges = {m: sorted({t for t, _, _ in imported if t != m and not m.startswith(t + ".")})
             for m, imported in graph().items()}
    # a package's __init__ imported by its own submodule is the package itself, not a circle
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in edges.get(node, []):
            if state.get(nxt) == 1:
                circles.append(trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    settle("import circles", [" -> ".join(c) for c in circles])


def private_attributes(path: Path, known: set[str], module: str) -> list[str]:
    """`config._secret` where `config` names another jobctl module."""
    tree = ast.parse(path.read_text(), str(path))
    here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for a in node.names:
                if f"{target}.{a.name}" in known:
                    aliases[a.asname or a.name] = f"{target}.{a.name}"
    return [f"{module}:{node.lineno} takes {node.attr} from {aliases[node.value.id]}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id in aliases and node.attr.startswith("_")
            and not node.attr.startswith("__") and aliases[node.value.id] != module]


def test_no_module_takes_another_modules_private_names():
    modules = all_modules()
    taken = [hit for m, p in modules.items() for hit in private_attributes(p, set(modules), m)]
    for module, imported in graph().items():
        for target, line, names in imported:
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and target != module:
                taken.append(f"{module}:{line} takes {', '.join(private)} from {target}")
    settle("private names used across modules", taken)


def settle(kind: str, found: list[str]) -> None:
    """Fail on every finding not in DEBT, and on every DEBT entry no longer
    found (so the list only shrinks as the house is put in order)."""
    key = lambda f: re.sub(r":\d+", "", re.sub(r" \d+ lines$", "", f))
    known = DEBT.get(kind, set())
    new = [f for f in found if key(f) not in known]
    paid = sorted(known - {key(f) for f in found})
    assert not new, f"{kind}:\n" + "\n".join(new)
    assert not paid, f"{kind}: no longer found, strike from DEBT:\n" + "\n".join(paid)


#: findings accepted for now, each to be paid off; issue 15 paid off all it
#: found, and nothing may be added without a reason in its commit
DEBT: dict[str, set[str]] = {}


MAX_FILE_LINES = 600
MAX_CLASS_LINES = 300
#: generated, not written: the cached help text of every command
GENERATED = {"jobctl.helptext"}


def test_no_file_or_class_is_too_big_to_read():
    big = []
    for module, path in all_modules().items():
        if module in GENERATED:
            continue
        text = path.read_text()
        lines = text.count("\n")
        if lines > MAX_FILE_LINES:
            big.append(f"{path.relative_to(ROOT)}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_CLASS_LINES:
                    big.append(f"{path.relative_to(ROOT)}: class {node.name} {length} lines")
    settle("over the size a newcomer reads in one go", big)


def test_a_job_status_is_spelled_in_jobstatus_only():
    """The lifecycle in one place: outside jobctl.model, code compares
    JobStatus members and SQL binds the names (`:st_running`, bound from
    JobStatus by the store), so no comparison with a status literal and no
    status quoted in SQL text. (The schema files in sql/ spell them: DDL
    takes no binds.)"""
    from jobctl.model import JobStatus

    statuses = {s.value for s in JobStatus}
    quoted = re.compile("'(" + "|".join(statuses) + ")'")
    found = []
    for module, path in sorted(all_modules().items()):
        if module == "jobctl.model" or module in GENERATED:
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                for operand in [node.left, *node.comparators]:
                    items = operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [operand]
                    if any(isinstance(e, ast.Constant) and e.value in statuses for e in items):
                        found.append(f"{module}:{node.lineno}: compares with a status literal")
            elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and id(node) not in docstrings and quoted.search(node.value)):
                found.append(f"{module}:{node.lineno}: a status quoted in SQL")
    assert not found, "\n".join(found)


#: the store's statements that move a job from one status to another
TRANSITIONS = {"insert_job", "insert_jobs", "fail_queued", "claim", "finish", "mark_lost",
               "cancel_queued", "claim_next", "claim_batch", "unreserve", "cancel_dependent"}


def test_every_status_transition_goes_through_the_lifecycle():
    """Only jobctl.lifecycle calls the store's transitions; everything else
    asks the lifecycle (whose guards keep a job's run at most once)."""
    found = []
    for module, path in sorted(all_modules().items()):
        if module == "jobctl.lifecycle" or module.startswith("jobctl.store"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr in TRANSITIONS
                    and isinstance(node.value, ast.Name) and node.value.id == "store"):
                found.append(f"{module}:{node.lineno}: store.{node.attr}")
    assert not found, "\n".join(found)
