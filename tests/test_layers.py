"""The import layers hold: no module of reconcile imports a layer above its own, and the core and
the sandbox never import each other (only the CLI, which serves the sandbox, sees both). Every
import counts, also those inside functions and under TYPE_CHECKING."""

from __future__ import annotations

import ast
from collections.abc import Iterator

import pytest

from tests.demo import ROOT

PACKAGE = ROOT / "reconcile"
LAYERS: tuple[tuple[str, ...], ...] = (
    # The sanitizer and the rate-window values import nothing of reconcile; every layer's messages
    # need the one, the settings the other.
    (
        "reconcile",
        "reconcile.errors",
        "reconcile.domain",
        "reconcile.render.sanitize",
        "reconcile.ratelimit",
    ),
    ("reconcile.state", "reconcile.writer", "reconcile.tomltext"),
    ("reconcile.config",),
    ("reconcile.tallyfy",),
    (
        "reconcile.plan",
        "reconcile.differences",
        "reconcile.selection",
        "reconcile.attribution",
        "reconcile.refresh",
    ),
    (
        "reconcile.planfile",
        "reconcile.safety",
        "reconcile.apply",
        "reconcile.baseline",
        "reconcile.drift",
        "reconcile.unmanaged",
        "reconcile.sources",
        "reconcile.listing",
        "reconcile.importer",
    ),
    ("reconcile.pipeline",),
    ("reconcile.render",),
    ("reconcile.cli", "reconcile.__main__"),
)
"""From the bottom up. A module belongs to the layer of the longest name here that it is, or is
inside of. A new module goes into the layer of what it does."""
SANDBOX = "reconcile.sandbox"
CLI = "reconcile.cli"


def module_name(path_parts: tuple[str, ...]) -> str:
    parts = list(path_parts)
    parts[-1] = parts[-1].removesuffix(".py")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["reconcile", *parts])


def modules() -> dict[str, ast.Module]:
    return {
        module_name(path.relative_to(PACKAGE).parts): ast.parse(path.read_text(encoding="utf-8"))
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer(name: str) -> int | None:
    """The layer's index, or None for the sandbox (outside the layers)."""
    if within(name, SANDBOX):
        return None
    matches = [
        (len(prefix), index)
        for index, prefixes in enumerate(LAYERS)
        for prefix in prefixes
        if within(name, prefix)
    ]
    assert matches, f"{name} is in no layer; add it to LAYERS in {__file__}"
    return max(matches)[1]


def imports(module: str, tree: ast.Module) -> Iterator[str]:
    """The reconcile modules `tree` imports, resolved to the most specific module name."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if within(alias.name, "reconcile"))
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.level == 0
            and within(node.module, "reconcile")
        ):
            # `from reconcile import pipeline` imports the module reconcile.pipeline.
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def imported_layer(name: str, known: set[str]) -> str:
    """`name` if it is a module, else the module it is an attribute of."""
    return name if name in known else name.rsplit(".", 1)[0]


MODULES = modules()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_layer_above_its_own(module: str) -> None:
    own = layer(module)
    for name in imports(module, MODULES[module]):
        target = imported_layer(name, set(MODULES))
        theirs = layer(target)
        if own is None or theirs is None:
            continue
        assert theirs <= own, (
            f"{module} (layer {own}: {LAYERS[own][0]}) imports {target} "
            f"(layer {theirs}: {LAYERS[theirs][0]})"
        )


@pytest.mark.parametrize("module", sorted(MODULES))
def test_the_core_and_the_sandbox_never_import_each_other(module: str) -> None:
    for name in imports(module, MODULES[module]):
        target = imported_layer(name, set(MODULES))
        if within(module, SANDBOX):
            assert within(target, SANDBOX), f"the sandbox module {module} imports {target}"
        elif not within(module, CLI):
            assert not within(target, SANDBOX), f"the core module {module} imports {target}"


def test_the_layer_check_sees_every_kind_of_import() -> None:
    tree = ast.parse(
        "import reconcile.plan\n"
        "from reconcile import pipeline\n"
        "from reconcile.state import load_state\n"
        "def late():\n"
        "    from reconcile.sandbox import Sandbox\n"
    )
    found = [imported_layer(name, set(MODULES)) for name in imports("x", tree)]
    assert found == ["reconcile.plan", "reconcile.pipeline", "reconcile.state", "reconcile.sandbox"]
    assert layer("reconcile.tallyfy.client") == layer("reconcile.tallyfy") == 3
    assert layer("reconcile.sandbox.server") is None
    assert len(MODULES) > 40
