"""The package's shape: no import cycles, and every part reachable through its registry."""

import ast
from pathlib import Path

import pytest

from helpers import ROOT

PACKAGE = ROOT / "betavae_dist"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def type_checking_only(node: ast.AST, parents: dict) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports(annotations: bool = False) -> dict[str, set[str]]:
    """Each module's imports of modules of the package, wherever in the file they are (a function's
    lazy import counts), except those under `if TYPE_CHECKING:` (never executed) unless `annotations`."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        tree = ast.parse(path.read_text())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (annotations or not type_checking_only(node, parents)):
                base = package.rsplit(".", node.level - 1)[0] if node.level else ""
                target = ".".join(p for p in (base, node.module) if p)
                for alias in node.names:  # `from . import checkpoint` imports a module
                    module = f"{target}.{alias.name}"
                    is_module = (ROOT / module.replace(".", "/")).with_suffix(".py").exists()
                    found.add(module if is_module else target)
            elif isinstance(node, ast.Import) and (annotations or not type_checking_only(node, parents)):
                found.update(alias.name for alias in node.names)
        graph[name] = {m for m in found if m.startswith("betavae_dist") and m != name}
    return graph


@pytest.mark.parametrize("annotations", [False, True], ids=["run", "with_type_annotations"])
def test_no_module_imports_a_module_that_imports_it_back(annotations):
    """Not even through the imports that only annotate (`if TYPE_CHECKING:`): a part that names the
    composed config, or a library module that names a command line's class, draws a circle."""
    graph = imports(annotations)

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt == goal:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    cycles = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if reaches(b, a))
    assert cycles == [], cycles


def test_train_imports_no_command_line_module():
    assert not {"betavae_dist.evaluate", "betavae_dist.export.__main__", "betavae_dist.sweep"} & imports()["betavae_dist.train"]


def test_the_config_machinery_imports_no_part():
    """Parts import config.py to declare their settings; it imports none of them (nor torch,
    scikit-learn, accelerate or the Hub client), and experiment.py composes them."""
    import subprocess
    import sys
    code = ("import sys, betavae_dist.config, betavae_dist.config_files; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('betavae_dist', 'torch', 'sklearn', 'accelerate', 'huggingface_hub')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == ("['betavae_dist', 'betavae_dist.config', 'betavae_dist.config_files', 'betavae_dist.errors', "
                              "'betavae_dist.registry']")


def test_command_lines_sit_on_top_of_the_library():
    """A command line is a module with a `main(argv)` (docs/architecture.md lists them); no other
    module imports one, so the library never loads an argument parser's module."""
    commands = {module_name(path) for path in PACKAGE.rglob("*.py")
                if any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in ast.parse(path.read_text()).body)}
    assert {"betavae_dist.train", "betavae_dist.sweep", "betavae_dist.data.index"} <= commands
    reached = {(module, target) for module, targets in imports().items() if module not in commands
               for target in targets & commands}
    assert reached == set(), reached


def test_the_training_settings_load_no_engine():
    """train_config.py (TrainConfig) imports nothing heavy: composing or checking a config does not
    load the loop, torch or accelerate through it."""
    import subprocess
    import sys
    code = ("import sys, betavae_dist.train_config; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('betavae_dist', 'torch', 'accelerate')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == ("['betavae_dist', 'betavae_dist.config', 'betavae_dist.errors', 'betavae_dist.registry', "
                              "'betavae_dist.train_config']")


def test_composing_and_checking_a_config_loads_no_engine():
    """experiment.py and every part's settings (and the registries of names they choose from) import
    no torch, scikit-learn, accelerate or Hub client: a config is composed, checked and its choices
    listed (launch's check, --help) without the engine; the parts load when first built."""
    import subprocess
    import sys
    code = ("import sys; from betavae_dist import config, experiment; "
            "cfg = experiment.from_sources(None, ['loss.objective=factor_vae', 'model.arch=fc', 'optim.name=adamw', "
            "'model.likelihood=gaussian', 'eval.metrics=beta_vae,dci,sap', 'data.name=color_dsprites', 'model.channels=3']); "
            "assert config.choices(cfg)['model.arch'] == ('fc', 'conv64', 'conv64_deep', 'dlib_conv'); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'torch', 'sklearn', 'accelerate', 'huggingface_hub', 'safetensors', 'numba'}))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
