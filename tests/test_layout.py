"""The layout's rules (DESIGN.md, "Layout"), checked on the source with `ast`:

1. No import cycles between the project's modules (module-level imports; inside helpdesk/llm,
   imports inside functions count too).
2. connectors/, actions/ and workers/ never import each other; what they share lives in
   helpdesk/. helpdesk/ and knowledge/ import none of the three.
3. A helpdesk subsystem (a package under helpdesk/) is reached through its public module, its
   `__init__.py`: code outside the package imports neither its submodules nor private (`_x`)
   names. Inside a package, siblings are imported by their full path, never through the
   package's own `__init__` (that is a cycle). Tests may import what they test directly.
4. HTTP client libraries are imported only by the client modules: one per external system.
5. An import inside a function says why on its line or the line above (a comment), since it
   hides a dependency from the reader and from rule 1.
6. tests/ mirrors the tree: the test of `a/b/c.py` is `tests/a/b/test_c.py` (of a package
   `a/b/`, `tests/a/test_b.py`); a module tested by several files gets a folder of its name
   holding them (`tests/workers/zoho_jobs/test_delivery.py` tests `workers/zoho_jobs.py`);
   a deployment file is tested the same way (`tests/deploy/prometheus/test_alerts.py` tests
   `deploy/prometheus/alerts.yml`).
   tests/integration/ (the running stack, run last), tests/faults/ (fault drills: a real part
   killed, stalled or broken, run after it) and tests/fakes/ (stand-ins for external systems)
   mirror nothing. Every test folder is a package (`__init__.py`).
"""
import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

PROJECT = Path(__file__).resolve().parent.parent
TESTS = PROJECT / "tests"
UNMIRRORED_TESTS = ("integration", "faults", "fakes")  # the running stack, its fault drills, external stand-ins
PACKAGES = ("helpdesk", "connectors", "actions", "workers", "knowledge", "nlu", "scripts")
ENTRY_POINTS = ("connectors", "actions", "workers")
HTTP_LIBRARIES = ("requests", "aiohttp", "httpx", "openai", "urllib.request", "http.client")
# the one client module of each external system (and what serves or waits on HTTP itself)
HTTP_CLIENTS = {
    "helpdesk/zoho/client.py": "Zoho Desk",
    "helpdesk/zoho/tokens.py": "Zoho's OAuth token endpoint",
    "helpdesk/chatwoot/client.py": "Chatwoot",
    "helpdesk/whatsapp/waha.py": "WAHA",
    "helpdesk/whatsapp/meta.py": "Meta Cloud API",
    "helpdesk/whatsapp/gateway.py": "what the WAHA and Meta clients share",
    "helpdesk/llm/client.py": "OpenAI-compatible LLMs",
    "helpdesk/llm/embed.py": "OpenAI-compatible embeddings (sync, index builds)",
    "helpdesk/llm/retry.py": "classifies the openai library's errors for the LLM clients above "
                             "(sends nothing itself)",
    "helpdesk/rasa_api.py": "Rasa's HTTP API",
    "helpdesk/health.py": "the action server's /health",
    "connectors/whatsapp/outage.py": "classifies the aiohttp errors of Rasa's calls to the "
                                     "action server (sends nothing itself)",
}


def modules() -> Dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (PROJECT / package).rglob("*.py"):
            parts = list(path.relative_to(PROJECT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = modules()


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def targets(node: ast.AST, module: str) -> List[Tuple[str, List[str]]]:
    """(imported project module, names taken from it) of one import statement."""
    if isinstance(node, ast.Import):
        return [(alias.name, []) for alias in node.names if alias.name.split(".")[0] in PACKAGES]
    if isinstance(node, ast.ImportFrom) and node.module:
        base = node.module
        if node.level:
            anchor = module.split(".") if is_package(module) else module.split(".")[:-1]
            anchor = anchor[:len(anchor) - (node.level - 1)]
            base = ".".join(anchor + [node.module])
        if base.split(".")[0] not in PACKAGES:
            return []
        found = []
        names = []
        for alias in node.names:
            if f"{base}.{alias.name}" in MODULES:  # a submodule imported by name
                found.append((f"{base}.{alias.name}", []))
            else:
                names.append(alias.name)
        if names or not found:
            found.append((base, names))
        return found
    return []


def imports(module: str, top_level_only: bool) -> List[Tuple[ast.AST, str, List[str]]]:
    tree = ast.parse(MODULES[module].read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    statements = []
    for node in nodes:
        if top_level_only and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue  # only for type checkers: never imported at run time
        if top_level_only and isinstance(node, (ast.If, ast.Try)):  # guarded imports
            nodes.extend(child for child in ast.walk(node) if isinstance(child, (ast.Import, ast.ImportFrom)))
            continue
        for target, names in targets(node, module):
            statements.append((node, target, names))
    return statements


def graph() -> Dict[str, Set[str]]:
    edges: Dict[str, Set[str]] = {name: set() for name in MODULES}
    for module in MODULES:
        for _, target, _ in imports(module, top_level_only=True):
            if target in MODULES and target != module:
                edges[module].add(target)
    return edges


def subsystem(name: str) -> str:
    """'helpdesk.zoho' for helpdesk.zoho.client; '' for modules outside a helpdesk package."""
    parts = name.split(".")
    if parts[0] == "helpdesk" and len(parts) >= 2 and is_package(".".join(parts[:2])):
        return ".".join(parts[:2])
    return ""


def test_no_import_cycles():
    edges = graph()
    state: Dict[str, int] = {}
    cycles = []

    def visit(node: str, path: List[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt):] + [node, nxt]) if nxt in path else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    assert cycles == []


def test_no_import_cycles_inside_the_llm_package_even_through_functions():
    """Rule 1, tightened for helpdesk/llm: imports inside functions and under TYPE_CHECKING
    count too, so none hides a cycle between the client, the uses and the embedder."""
    package = "helpdesk.llm"
    inside = [m for m in MODULES if m.startswith(package + ".")]
    edges: Dict[str, Set[str]] = {m: set() for m in inside}
    for module in inside:
        for _, target, _ in imports(module, top_level_only=False):
            if target in edges and target != module:
                edges[module].add(target)
    cycles = []

    def visit(node: str, path: List[str]) -> None:
        for nxt in sorted(edges[node]):
            if nxt in path:
                cycles.append(" -> ".join(path[path.index(nxt):] + [node, nxt]))
            elif nxt != node:
                visit(nxt, path + [node])

    for node in sorted(edges):
        visit(node, [])
    assert cycles == []


def test_entry_points_never_import_each_other_and_the_core_imports_none():
    wrong = []
    for module in MODULES:
        top = module.split(".")[0]
        for _, target, _ in imports(module, top_level_only=False):
            other = target.split(".")[0]
            if top in ENTRY_POINTS and other in ENTRY_POINTS and other != top:
                wrong.append(f"{module} imports {target}")
            if top in ("helpdesk", "knowledge", "nlu") and other in ENTRY_POINTS:
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_subsystems_are_reached_through_their_public_module():
    wrong = []
    for module in MODULES:
        own = subsystem(module)
        for _, target, names in imports(module, top_level_only=False):
            theirs = subsystem(target)
            if not theirs:
                continue
            if theirs != own:
                if target != theirs:
                    wrong.append(f"{module} imports the internal module {target}")
                wrong += [f"{module} imports the private {target}.{n}" for n in names if n.startswith("_")]
            elif target == own and module != own:
                wrong.append(f"{module} imports its own package's __init__ ({target})")
    assert wrong == []


def test_http_clients_only_in_client_modules():
    wrong = []
    for module, path in MODULES.items():
        relative = path.relative_to(PROJECT).as_posix()
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            for name in names:
                if any(name == lib or name.startswith(lib + ".") for lib in HTTP_LIBRARIES) \
                        and relative not in HTTP_CLIENTS:
                    wrong.append(f"{relative} imports {name}")
    assert wrong == []


def test_imports_inside_functions_say_why():
    wrong = []
    for module, path in MODULES.items():
        lines = path.read_text().splitlines()
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if not targets(node, module):
                    continue
                here = lines[node.lineno - 1]
                above = node.lineno - 2  # a comment may head a block of imports
                while above >= 0 and lines[above].strip().startswith(("from ", "import ")):
                    above -= 1
                if "#" not in here and not (above >= 0 and lines[above].strip().startswith("#")):
                    wrong.append(f"{path.relative_to(PROJECT)}:{node.lineno}: {here.strip()}")
    assert wrong == []


def test_tests_mirror_the_tree():
    wrong = []
    for path in sorted(TESTS.rglob("test_*.py")):
        relative = path.relative_to(TESTS)
        if relative.parts[0] in UNMIRRORED_TESTS or path == Path(__file__).resolve():
            continue
        name = path.stem[len("test_"):]
        mirrored = PROJECT / relative.parent
        if (mirrored / f"{name}.py").is_file() or (mirrored / name / "__init__.py").is_file():
            continue
        if (mirrored / f"{name}.yml").is_file() and relative.parts[0] == "deploy":
            continue  # a deployment file: tests/deploy/prometheus/test_alerts.py tests alerts.yml
        if len(relative.parts) > 1 and (mirrored.parent / f"{mirrored.name}.py").is_file():
            continue  # tests/.../NAME/test_x.py: one of the test files of the module NAME.py
        wrong.append(f"tests/{relative.as_posix()} tests no {relative.parent.as_posix()}/{name}.py")
    folders = {path.parent for path in TESTS.rglob("*.py") if "__pycache__" not in path.parts}
    wrong += [f"{folder.relative_to(PROJECT)} has no __init__.py" for folder in sorted(folders)
              if not (folder / "__init__.py").is_file()]
    assert wrong == []
