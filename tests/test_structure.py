"""The repository's structure rules, read from the sources with ast (nothing is imported):

- no import circle among the top-level modules, directly or through others;
- no line over 100 characters in the files that have been brought within it (CLEAN);
- imports inside functions only of optional or slow modules (INNER_ALLOWED), each of which says why
  at its import.

Each check is a function of source texts, tested first on small made-up modules with known answers
and then applied to the repository; a failure lists every offender.
"""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_LINE = 100

# Files within MAX_LINE; a file joins the list once it has been wrapped (geometry.py, runs.py and
# the other scripts are still being changed elsewhere).
CLEAN = ["train.py", "model.py", "trajectory_record.py", "determinism.py",
         "dataset.py", "common.py", "config.py", "readers.py"]

# Imports allowed inside functions: top-level package -> the files that may do it (None: any
# file). Optional dependencies (a missing one must not stop the scripts that never need it) and
# slow imports (matplotlib's 0.7 s on every command that draws nothing). torch in executors.py
# only: make_results.py, which imports executors, starts in 0.15 s without torch's 2 s import.
# scipy in geometry.py only: scipy.signal's 0.9 s on every script that imports geometry.
INNER_ALLOWED = {
    "matplotlib": None, "submitit": None, "tiktoken": None, "datasets": None,
    "transformers": None, "peft": None, "cut_cross_entropy": None, "liger_kernel": None,
    "torch": {"executors.py"}, "scipy": {"geometry.py"},
}


def top_level_sources(root: str = ROOT) -> dict[str, str]:
    """{module name: source} of the repository's top-level *.py files."""
    return {f[:-3]: open(os.path.join(root, f)).read()
            for f in sorted(os.listdir(root)) if f.endswith(".py")}


def imported_names(node) -> list[str]:
    """The top-level package names an Import or ImportFrom node imports (relative imports: none,
    the layout is flat)."""
    if isinstance(node, ast.Import):
        return [a.name.split(".")[0] for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module.split(".")[0]]
    return []


def import_graph(sources: dict[str, str]) -> dict[str, set[str]]:
    """module -> the repository modules it imports anywhere in its file (at the top, inside
    functions or under conditions: a circle through any of them can bite at run time)."""
    graph = {}
    for name, src in sources.items():
        deps = set()
        for node in ast.walk(ast.parse(src)):
            deps.update(n for n in imported_names(node) if n in sources and n != name)
        graph[name] = deps
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle (a path a -> ... -> a) per module that can reach itself, each circle once."""
    found, seen = [], set()
    for start in sorted(graph):
        # breadth-first from start's imports, keeping the way back, so the circle is a shortest one
        parent, todo = {d: start for d in sorted(graph[start])}, sorted(graph[start])
        while todo and start not in parent:
            nxt = []
            for m in todo:
                for d in sorted(graph.get(m, ())):
                    if d not in parent:
                        parent[d] = m
                        nxt.append(d)
            todo = nxt
        if start in parent:
            back, m = [start], parent[start]  # parent[x]: the module that imports x
            while m != start:
                back.append(m)
                m = parent[m]
            path = [start, *reversed(back)]
            if frozenset(path) not in seen:
                seen.add(frozenset(path))
                found.append(path)
    return found


def long_lines(src: str, limit: int = MAX_LINE) -> list[tuple[int, int]]:
    """(line number, length) of every line over `limit` characters."""
    return [(i, len(line)) for i, line in enumerate(src.splitlines(), 1) if len(line) > limit]


def inner_imports(src: str) -> list[tuple[int, str]]:
    """(line, package) of every import inside a function (at any depth)."""
    out = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if in_function:
                out.extend((child.lineno, n) for n in imported_names(child))
            visit(child, inside)
    visit(ast.parse(src), False)
    return out


def disallowed_inner_imports(sources: dict[str, str]) -> list[str]:
    bad = []
    for name, src in sources.items():
        for line, pkg in inner_imports(src):
            files = INNER_ALLOWED.get(pkg, set())
            if pkg not in INNER_ALLOWED or (files is not None and f"{name}.py" not in files):
                bad.append(f"{name}.py:{line}: import of {pkg} inside a function")
    return bad


# ----------------------------------------------------------------------------- the checks' answers
def test_circles_are_found_directly_and_through_others():
    direct = {"a": "import b\n", "b": "from a import x\n", "c": "import a\n"}
    assert import_circles(import_graph(direct)) == [["a", "b", "a"]]
    through = {"a": "import b\n", "b": "def f():\n    import c\n", "c": "import a.sub\n",
               "d": "import os\n"}
    assert import_circles(import_graph(through)) == [["a", "b", "c", "a"]]
    # a chain without a way back, and imports of outside packages, are no circle
    chain = {"a": "import b\nimport numpy\n", "b": "import c\n", "c": "import os\n"}
    assert import_circles(import_graph(chain)) == []


def test_long_lines_and_inner_imports_are_found():
    src = "x = 1\n" + "y = '" + "z" * 95 + "'\n"        # 101 characters on line 2
    assert long_lines(src) == [(2, 101)]
    assert long_lines("a" * 100) == []
    src = ("import torch\n"
           "def f():\n"
           "    import matplotlib.pyplot as plt\n"
           "    def g():\n"
           "        from numpy import linalg\n"
           "class C:\n"
           "    import json\n"
           "    def m(self):\n"
           "        import torch\n")
    assert inner_imports(src) == [(3, "matplotlib"), (5, "numpy"), (9, "torch")]
    bad = disallowed_inner_imports({"runs": src, "executors": "def f():\n    import torch\n"})
    assert bad == ["runs.py:5: import of numpy inside a function",
                   "runs.py:9: import of torch inside a function"]


# ----------------------------------------------------------------------------- the repository
@pytest.fixture(scope="module")
def sources():
    return top_level_sources()


def test_no_import_circles(sources):
    circles = import_circles(import_graph(sources))
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_clean_files_have_no_long_lines(sources):
    missing = [f for f in CLEAN if f[:-3] not in sources]
    assert not missing, f"files in CLEAN that do not exist: {missing}"
    bad = [f"{f}:{i}: {n} characters" for f in CLEAN for i, n in long_lines(sources[f[:-3]])]
    assert not bad, f"lines over {MAX_LINE} characters:\n" + "\n".join(bad)


def test_imports_inside_functions_only_of_optional_modules(sources):
    bad = disallowed_inner_imports(sources)
    assert not bad, ("imports inside functions (move them to the top of the file, or add an "
                     "optional or slow module to INNER_ALLOWED with the reason):\n"
                     + "\n".join(bad))
