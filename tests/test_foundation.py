"""Settings, the card schema, the store, and the layering rules of the house."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from catalog.card import AdapterCard, normalize_base_model
from catalog.settings import Settings, SettingsError
from catalog.store import CatalogError, CatalogStore

REPO = Path(__file__).resolve().parents[1]


def make_card(i: int = 1, **kw) -> AdapterCard:
    data = dict(id=f"civitai-{i}", source="civitai", civitai_model_id=100 + i, civitai_version_id=i,
                name=f"Adapter {i}", base_model="SD 1.5", adapter_type="LoRA", tags=["style"])
    data.update(kw)
    return AdapterCard(**data)


def test_settings_environment_overrides(tmp_path):
    env = {"STYLUS_HOME": str(tmp_path), "STYLUS_TOP_K": "42", "STYLUS_ALLOW_PICKLE": "yes",
           "STYLUS_DOWNLOAD_HOSTS": "a.example, b.example", "STYLUS_CHROMA_MODE": "server"}
    s = Settings.from_env(env)
    assert s.top_k == 42 and s.allow_pickle is True and s.chroma_mode == "server"
    assert s.download_hosts == ["a.example", "b.example"]
    assert s.catalog_dir == tmp_path / "catalog"
    assert Settings.from_env(env, top_k=7).top_k == 7  # explicit beats environment


@pytest.mark.parametrize("env,needle", [
    ({"STYLUS_TOP_K": "many"}, "STYLUS_TOP_K='many'"),
    ({"STYLUS_COMPOSER": "magic"}, "composer='magic'"),
    ({"STYLUS_ALLOW_PICKLE": "perhaps"}, "STYLUS_ALLOW_PICKLE"),
])
def test_settings_bad_values_name_the_value(env, needle):
    with pytest.raises(SettingsError, match=needle.replace("(", r"\(")):
        Settings.from_env(env)


def test_secrets_are_masked(tmp_path):
    s = Settings(home=tmp_path, civitai_token="tok-secret-123")
    assert "tok-secret-123" not in str(s.public_dict())
    assert s.public_dict()["civitai_token"] == "set"


@pytest.mark.parametrize("raw,want", [("SD 1.5", "SD 1.5"), ("sd1.5", "SD 1.5"), ("SDXL 1.0", "SDXL 1.0"),
                                      ("Stable Diffusion v1.5", "SD 1.5"), (None, "unknown"),
                                      ("Playground v2", "Playground v2")])
def test_base_model_normalisation(raw, want):
    assert normalize_base_model(raw) == want


def test_card_validation_messages():
    with pytest.raises(ValueError, match="adapter_type 'LoFi'"):
        make_card(adapter_type="LoFi")
    assert make_card(recommended_weight=100).recommended_weight is None  # junk weight treated as unknown


def test_upsert_is_idempotent_and_curation_survives_reimport(store):
    assert store.upsert(make_card(1)) == "added"
    assert store.upsert(make_card(1)) == "unchanged"
    store.edit("civitai-1", editor="ana", description="Curated text", weight=0.6, category="style", blocked=True)
    assert store.upsert(make_card(1, tags=["style", "anime"])) == "updated"
    card = store.get("civitai-1")
    assert card.tags == ["style", "anime"]
    assert card.effective_description() == "Curated text" and card.effective_weight() == 0.6
    assert card.blocked and card.curation.edited_by == "ana" and card.curation.edited_at
    assert store.stats()["flags"]["blocked"] == 1


def test_edit_rejects_bad_values_and_unknown_fields(store):
    store.upsert(make_card(2))
    with pytest.raises(CatalogError, match="weight 5.0 is outside"):
        store.edit("civitai-2", weight=5.0)
    with pytest.raises(CatalogError, match="cannot edit colour"):
        store.edit("civitai-2", colour="red")
    with pytest.raises(CatalogError, match="no adapter card with id 'nope'"):
        store.edit("nope", blocked=True)
    assert store.get("civitai-2").curation.weight is None  # nothing half-applied


def test_transaction_rolls_back_as_a_whole(store):
    with pytest.raises(RuntimeError):
        with store.transaction() as tx:
            store.upsert(make_card(3), tx)
            raise RuntimeError("crash mid-batch")
    assert "civitai-3" not in store and len(store) == 0


def test_store_reopens_with_committed_cards(tmp_path):
    with CatalogStore(tmp_path / "c") as s:
        s.upsert(make_card(4))
    with CatalogStore(tmp_path / "c") as s:
        assert s.get("civitai-4").name == "Adapter 4"


def _imports(package: str) -> set[str]:
    found = set()
    for path in (REPO / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def test_dependencies_point_one_way():
    assert not {"gradio", "components", "stylus_ui"} & _imports("catalog")
    dynamic = [p for p in (REPO / "catalog").rglob("*.py") if "import_module(" in p.read_text(encoding="utf-8")]
    assert not dynamic, f"catalog/ must not import higher layers dynamically either: {dynamic}"
    assert not {"gradio", "stylus_ui"} & _imports("components")
    # the ground layer is under every other: it imports nothing of ours, not even dynamically
    assert not {"catalog", "components", "stylus_ui", "tools", "app"} & _imports("ground")
    dynamic = [p for p in (REPO / "ground").rglob("*.py") if "import_module(" in p.read_text(encoding="utf-8")]
    assert not dynamic, f"ground/ must not import other layers dynamically either: {dynamic}"


def test_errors_have_one_root_and_keep_their_builtin_bases():
    """The front ends catch StylusError alone; code that catches a builtin base still catches these."""
    from components.composer.llm import LLMError
    from components.generator.downloads import DownloadError
    from components.generator.lora_keys import AdapterFileError
    from components.index.vectors import IndexMismatchError
    from components.types import StylusError as old_name
    from ground.errors import StylusError
    assert old_name is StylusError
    for error in (CatalogError, SettingsError, LLMError, DownloadError, AdapterFileError, IndexMismatchError):
        assert issubclass(error, StylusError), error
    assert issubclass(SettingsError, ValueError) and issubclass(AdapterFileError, ValueError)
    assert issubclass(DownloadError, RuntimeError)


def test_catalog_and_components_do_not_pull_in_gradio():
    code = ("import sys, importlib, pkgutil, catalog, components\n"
            "for pkg in (catalog, components):\n"
            "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
            "        if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
            "assert 'gradio' not in sys.modules, 'gradio imported'\n")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=300)


def test_cli_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "stylus_ui", "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for cmd in ("catalog", "retrieve", "compose", "generate", "serve"):
        assert cmd in out.stdout


def test_remote_reimport_keeps_local_file_facts(store):
    store.upsert(make_card(5, local_path="/loras/a.safetensors", adapter_type="LoCon", source="folder"))
    assert store.upsert(make_card(5)) == "updated"
    card = store.get("civitai-5")
    assert card.local_path == "/loras/a.safetensors" and card.adapter_type == "LoCon"
    assert store.upsert(make_card(5)) == "unchanged"


def _module_graph(packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Our module -> the modules of ours it imports (function-level imports too: an import moved
    into a function to dodge a cycle is still one), leaving out imports only for type checkers."""
    modules = {}
    for package in packages:
        for path in (REPO / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(node.test) for b in node.body for n in ast.walk(b)}
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = []
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                # "from . import render" imports the module render; "from .x import f" imports x
                targets += [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        edges = set()
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def test_no_module_cycles():
    graph = _module_graph(("catalog", "components", "ground", "stylus_ui", "tools"))
    cycles = []

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return seen

    for module in sorted(graph):
        back = sorted(m for m in graph[module] if module in reach(m))
        if back:
            cycles.append(f"{module} <-> {', '.join(back)}")
    assert not cycles, "module cycles (a package importing its own modules counts too):\n" + "\n".join(cycles)


def test_front_ends_use_only_the_public_api_of_components():
    """stylus_ui reaches components/ only through components.api (the engine, its typed requests
    and results, the limits and a few presentation helpers), so the method's inside can change
    without touching a tab or a command; and every public name there resolves."""
    graph = _module_graph(("catalog", "components", "ground", "stylus_ui"))
    deep = sorted(f"{module} imports {target}" for module, targets in graph.items() if module.startswith("stylus_ui")
                  for target in targets if target.startswith("components") and target != "components.api")
    assert not deep, "front ends must import components only through components.api:\n" + "\n".join(deep)
    import components.api as api
    assert sorted(api.__all__) == sorted(api._EXPORTS)
    for name in api.__all__:
        assert getattr(api, name) is not None, name
    with pytest.raises(AttributeError, match="components.api has no 'Retriever'"):
        getattr(api, "Retriever")
