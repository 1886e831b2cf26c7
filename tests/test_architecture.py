"""The package's architecture, read from its source with ``ast`` (nothing is imported).

Rules (each has a negative test on a small synthetic tree, so each can fail):

1. **No reaching into another module's privates.** No module reads or writes ``x._name`` (or
   ``getattr(x, "_name")``, ``hasattr``/``setattr``/``delattr``, or ``from m import _name``)
   when ``_name`` is defined only in other modules of the package. A module *defines*
   ``_name`` when it assigns ``self._name`` (or ``cls._name``), or has a function, class,
   variable or parameter of that name; writing ``other._name = ...`` defines nothing.
   Friends inside one module are fine. A private name the package defines nowhere belongs
   to a third party (PyAudio, websocket-client, Ray, the standard library): only the compat
   modules in :data:`COMPAT` may reach those, each only the names listed for it. Names the
   standard library documents as public (:data:`DOCUMENTED`) pass. The check goes by
   attribute name, not by type: a name the module defines itself is taken as its own.
2. **No import cycle**, counting every import that runs: module-level and function-level
   (lazy) ones; imports under ``if TYPE_CHECKING:`` never run and are left out.
   ``from pkg import name`` points at ``pkg.name`` when that is a module, else at ``pkg``.
3. **Short functions**: none over :data:`CORE_MAX_LINES` lines in the core and its facade
   (``_core/``, ``client.py``), none over :data:`MAX_LINES` anywhere; docstrings are not
   counted.
4. **A flat top level of at most :data:`MAX_TOP_MODULES` modules** directly in
   ``realtime_sync/``.
5. **Layers**: the leaf modules (:data:`LEAVES`, :data:`SHARED_LEAVES`) and the core
   (``_core/``) import nothing above them (features, server, apps, the package root);
   the features never import the apps (the command line, ``testing``), though they may run
   the local server (the offline engine of a batch); the server imports neither the apps nor
   the features (it shares only the leaf modules: :data:`LEAVES`, :data:`SHARED_LEAVES` and
   the core).
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import realtime_sync

PACKAGE = Path(realtime_sync.__file__).resolve().parent

CORE_MAX_LINES = 80
MAX_LINES = 100
MAX_TOP_MODULES = 24

# Third-party internals, each reached from one compat module and nowhere else: the module,
# and the private names of the third party it reaches.
COMPAT: Dict[str, Set[str]] = {
    # PyAudio: Pa_AbortStream through its C module, and the stream's own state
    "audio._pyaudio": {"_portaudio", "_stream", "_is_running"},
    # the standard library's wave reader: where the data chunk starts (truncated files)
    "audio._source": {"_data_chunk", "_file"},
    # Ray: keep a local cluster's node on the loopback interface
    "_features.cluster": {"_private"},
}
# Names with a leading underscore that the standard library documents as public API
# (collections.namedtuple's methods and fields).
DOCUMENTED = {"_replace", "_asdict", "_fields", "_make", "_field_defaults"}

# Layers, by module name relative to the package ("client", "_core.transport", "cli", ...).
# A module belongs to the first layer whose prefix matches.
ROOT = ("__init__", "__main__")  # the package's entry points: they may import anything
LEAVES = ("errors", "events", "models")
CORE = ("_core",)
# client.py is the public facade over the core (RealtimeClient): functions as short as the
# core's, and like the features it may call conversation/tools for its shortcuts (send_text,
# ask, tools); those reach the client only through client.host, so no cycle (rule 2).
CORE_LENGTHS = ("_core", "client")
SERVER = ("server",)
APPS = ("cli", "testing")  # the command line, and the test double that runs the server
FORBIDDEN = {
    # layer: layers it must never import
    "leaf": ("root", "features", "apps", "server"),
    "core": ("root", "features", "apps", "server"),
    "features": ("apps",),
    "server": ("root", "apps", "features"),
}
# modules the features and the server may share besides the leaves and the core: the audio
# converters and G.711 codec (leaf code under audio/)
SHARED_LEAVES = ("audio._g711", "audio._convert")


# -- reading the tree ---------------------------------------------------------------------------
@dataclass
class Module:
    """One parsed module of the tree."""

    name: str  # dotted, relative to the package root: "client", "_core.transport"
    path: Path
    tree: ast.Module
    is_package: bool
    defines: Set[str] = field(default_factory=set)
    reaches: List[Tuple[int, str]] = field(default_factory=list)  # (line, private name)
    imports: List[Tuple[int, str]] = field(default_factory=list)  # (line, module name)


def read_tree(root: Path) -> Dict[str, Module]:
    """Every module under ``root`` (a package directory), parsed."""
    modules: Dict[str, Module] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = list(rel.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        name = ".".join(parts) if parts else "__init__"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        modules[name] = Module(name, path, tree, is_package)
    for module in modules.values():
        _read_names(module)
        _read_imports(module, modules)
    return modules


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _read_names(module: Module) -> None:
    accessors = {"getattr", "hasattr", "setattr", "delattr"}
    for node in ast.walk(module.tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            module.defines.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            module.defines.add(node.id)
        elif isinstance(node, ast.arg):
            module.defines.add(node.arg)
        elif isinstance(node, ast.alias) and node.asname:
            module.defines.add(node.asname)
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            if (isinstance(node.ctx, ast.Store) and isinstance(node.value, ast.Name)
                    and node.value.id in ("self", "cls")):
                module.defines.add(node.attr)  # an attribute of the module's own objects
            module.reaches.append((node.lineno, node.attr))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in accessors and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str) and _private(node.args[1].value)):
            module.reaches.append((node.lineno, node.args[1].value))


def _type_checking_nodes(tree: ast.Module) -> Set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` (never run)."""
    skipped: Set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else (
                test.attr if isinstance(test, ast.Attribute) else "")
            if name == "TYPE_CHECKING":
                for child in node.body:
                    skipped.update(id(n) for n in ast.walk(child))
    return skipped


def _read_imports(module: Module, modules: Dict[str, Module]) -> None:
    skipped = _type_checking_nodes(module.tree)
    package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    if module.name == "__init__":
        package = []
    for node in ast.walk(module.tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = _in_package(node.module or "")
                if base is None:
                    continue
            else:
                up = package[:len(package) - (node.level - 1)] if node.level > 1 else package
                base = ".".join(up + ([node.module] if node.module else []))
            for alias in node.names:
                target = f"{base}.{alias.name}" if base else alias.name
                if target in modules:
                    module.imports.append((node.lineno, target))
                else:  # a name the module defines: a private one is reached like x._name
                    module.imports.append((node.lineno, base or "__init__"))
                    if _private(alias.name):
                        module.reaches.append((node.lineno, alias.name))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                base = _in_package(alias.name)
                if base is not None:
                    module.imports.append((node.lineno, base or "__init__"))


def _in_package(dotted: str) -> Optional[str]:
    """``realtime_sync.x.y`` -> ``x.y`` (``""`` for the package itself); None outside."""
    root = PACKAGE.name
    if dotted == root:
        return ""
    if dotted.startswith(root + "."):
        return dotted[len(root) + 1:]
    return None


# -- the rules ------------------------------------------------------------------------------------
def private_reaches(modules: Dict[str, Module],
                    compat: Dict[str, Set[str]]) -> List[str]:
    """Rule 1: ``module:line: _name`` for each private name reached that only other modules
    define, or (a third party's) reached outside its compat module."""
    defined_by: Dict[str, Set[str]] = {}
    for module in modules.values():
        for name in module.defines:
            defined_by.setdefault(name, set()).add(module.name)
    found = []
    for module in modules.values():
        for line, name in sorted(module.reaches):
            if (name in module.defines or name in compat.get(module.name, set())
                    or name in DOCUMENTED):
                continue  # its own, a friend inside the module, or a compat module's
            owners = defined_by.get(name)
            if owners:
                where = ", ".join(sorted(owners))
                found.append(f"{module.name}:{line}: {name} (defined in {where})")
            elif name not in compat.get(module.name, set()):
                found.append(f"{module.name}:{line}: {name} (third-party internals outside a "
                             "compat module)")
    return found


def import_cycles(modules: Dict[str, Module]) -> List[List[str]]:
    """Rule 2: every cycle of imports (as the list of its modules), each once."""
    graph: Dict[str, Set[str]] = {
        m.name: {t for _, t in m.imports if t != m.name and t in modules}
        for m in modules.values()}
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    components: List[List[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(components)


def long_functions(modules: Dict[str, Module]) -> List[str]:
    """Rule 3: ``module:line: name has N lines`` for each function over its limit."""
    found = []
    for module in modules.values():
        core = module.name.split(".")[0] in CORE_LENGTHS
        limit = CORE_MAX_LINES if core else MAX_LINES
        for node in ast.walk(module.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = _length(node)
                if length > limit:
                    found.append(f"{module.name}:{node.lineno}: {node.name} has {length} lines "
                                 f"(at most {limit})")
    return found


def _length(node: ast.AST) -> int:
    """Lines of a function from its ``def`` to its end, its docstring left out."""
    assert isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    end = node.end_lineno or node.lineno
    length = end - first + 1
    body = node.body
    if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        length -= (body[0].end_lineno or body[0].lineno) - body[0].lineno + 1
    return length


def top_level_modules(root: Path) -> List[str]:
    """Rule 4: the modules directly in the package directory."""
    return sorted(p.name for p in root.glob("*.py"))


def _layer(name: str) -> str:
    first = name.split(".")[0]
    if name in ROOT:
        return "root"
    if name in LEAVES or name in SHARED_LEAVES:
        return "leaf"
    if first in CORE:
        return "core"
    if first in SERVER:
        return "server"
    if first in APPS:
        return "apps"
    return "features"


def upward_imports(modules: Dict[str, Module]) -> List[str]:
    """Rule 5: ``module:line: imports target (layer -> layer)`` for each import into a layer
    the importer must not depend on."""
    found = []
    for module in modules.values():
        layer = _layer(module.name)
        for line, target in module.imports:
            if target not in modules:
                continue
            to = _layer(target)
            if to in FORBIDDEN.get(layer, ()):
                found.append(f"{module.name}:{line}: imports {target} ({layer} -> {to})")
    return found


# -- the package ----------------------------------------------------------------------------------
_TREE: Optional[Dict[str, Module]] = None


def package() -> Dict[str, Module]:
    global _TREE
    if _TREE is None:
        _TREE = read_tree(PACKAGE)
    return _TREE


def test_no_module_reaches_the_private_attributes_of_another():
    assert private_reaches(package(), COMPAT) == []


def test_there_is_no_import_cycle_lazy_imports_included():
    assert import_cycles(package()) == []


def test_functions_are_short():
    assert long_functions(package()) == []


def test_the_top_level_stays_small():
    modules = top_level_modules(PACKAGE)
    assert len(modules) <= MAX_TOP_MODULES, modules


def test_no_import_points_up_a_layer():
    assert upward_imports(package()) == []


def test_the_compat_modules_exist():
    for name in COMPAT:
        assert name in package(), name


# -- each rule can fail: a small synthetic tree per rule -----------------------------------------
def make_tree(root: Path, files: Dict[str, str]) -> Dict[str, Module]:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    for folder in {p.parent for p in root.rglob("*.py")} | {root}:
        (folder / "__init__.py").touch()
    return read_tree(root)


def test_a_private_attribute_reached_from_another_module_is_found(tmp_path):
    tree = make_tree(tmp_path, {
        "owner.py": """
            class Owner:
                def __init__(self):
                    self._ring = bytearray()
                    self._lock = None

                def _trim(self):
                    return self._ring  # a friend inside the module: fine
            """,
        "user.py": """
            def use(owner, other):
                owner._ring += b"x"
                getattr(owner, "_trim")()
                return other._socket_internal  # defined nowhere: a third party's
            """,
        "feature.py": """
            from .owner import _helper
            """,
    })
    found = private_reaches(tree, {})
    assert found == [
        "feature:2: _helper (third-party internals outside a compat module)",
        "user:3: _ring (defined in owner)",
        "user:4: _trim (defined in owner)",
        "user:5: _socket_internal (third-party internals outside a compat module)",
    ]
    assert private_reaches(tree, {"user": {"_socket_internal"}, "feature": {"_helper"}}) == [
        "user:3: _ring (defined in owner)", "user:4: _trim (defined in owner)"]


def test_a_cycle_through_a_lazy_import_is_found_and_type_checking_imports_are_not(tmp_path):
    tree = make_tree(tmp_path, {
        "cli/__init__.py": """
            def main():
                from ._translate import run  # lazy
                return run
            """,
        "cli/_translate.py": """
            from .. import cli
            """,
        "a.py": """
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from .b import B
            """,
        "b.py": """
            from . import a
            """,
    })
    assert import_cycles(tree) == [["cli", "cli._translate"]]


def test_a_long_function_is_found_and_its_docstring_is_not_counted(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(79))
    doc = '    """' + "\n" * 30 + '    """\n'
    tree = make_tree(tmp_path, {
        "_core/transport.py": f"def run():\n{doc}{body}\n    return x0\n",  # 81 lines
        "feature.py": f"def run():\n{doc}{body}\n    return x0\n",  # 81 lines: fine here
        "client.py": f"def run():\n{doc}{body}\n    return x0\n",  # the facade: as the core
        "batch.py": "def run():\n" + "\n".join(f"    y{i} = {i}" for i in range(100)) + "\n",
    })
    assert long_functions(tree) == [
        "_core.transport:1: run has 81 lines (at most 80)",
        "batch:1: run has 101 lines (at most 100)",
        "client:1: run has 81 lines (at most 80)",
    ]


def test_a_crowded_top_level_is_found(tmp_path):
    for i in range(MAX_TOP_MODULES + 1):
        (tmp_path / f"m{i}.py").write_text("", encoding="utf-8")
    assert len(top_level_modules(tmp_path)) > MAX_TOP_MODULES


def test_an_import_from_the_core_up_into_a_feature_is_found(tmp_path):
    tree = make_tree(tmp_path, {
        "_core/host.py": """
            def tools():
                from ..tools import tools_of
                return tools_of
            """,
        "tools.py": "from ._core import wire\n",
        "_core/wire.py": "",
        "voice_chat.py": """
            def run():
                from .cli._support import report
            """,
        "cli/_support.py": "",
        "server/_session.py": "from ..transcription import Segment\n",
        "transcription.py": "from .errors import Bad\n",
        "errors.py": "",
        "events.py": "def segment():\n    from .transcription import Segment\n",
        "__main__.py": "from .cli._support import report\n",  # the entry point: anything
    })
    assert upward_imports(tree) == [
        "_core.host:3: imports tools (core -> features)",
        "events:2: imports transcription (leaf -> features)",
        "server._session:1: imports transcription (server -> features)",
        "voice_chat:3: imports cli._support (features -> apps)",
    ]
