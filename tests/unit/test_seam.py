"""The seam between stacks and what runs on them (docs/design.md §2).

Probes, widgets, the report and the manipulations may use a stack only through the
protocol of ``backends/base.py``: they import no concrete backend, touch no private
attribute of anything but themselves, and call on a stack only the protocol's members.
"""
import ast
from pathlib import Path

import pytest

from unclip_probe.backends.base import PROTOCOL_MEMBERS, Stack

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[2] / "unclip_probe"
ABOVE_THE_SEAM = sorted([*PACKAGE.glob("probes/*.py"), *PACKAGE.glob("widgets/*.py"), PACKAGE / "report.py",
                         PACKAGE / "manipulations.py"])
STACK_NAMES = {"stack", "other"}  # how the code above the seam names a stack it was given


def _module_of(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)


def _imported(node: ast.AST, module: str) -> list[str]:
    """Absolute names of the modules an import statement brings in."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".")[: -node.level]
            mod = ".".join(base + ([node.module] if node.module else []))
        else:
            mod = node.module or ""
        return [mod] + [f"{mod}.{a.name}" for a in node.names]
    return []


def _stack_expr(node: ast.AST) -> bool:
    """`stack`, `self.stack`, `stacks[...]`: an expression holding a stack."""
    if isinstance(node, ast.Name):
        return node.id in STACK_NAMES
    if isinstance(node, ast.Attribute):
        return node.attr == "stack" and isinstance(node.value, ast.Name) and node.value.id == "self"
    return False


def violations(source: str, module: str) -> list[str]:
    """Every way `source` crosses the seam, as 'line: what'."""
    out = []
    for node in ast.walk(ast.parse(source)):
        for name in _imported(node, module):
            if name.startswith("unclip_probe.backends.world") or name.startswith("unclip_probe.eval"):
                out.append(f"{node.lineno}: imports {name}")
        if isinstance(node, ast.Attribute):
            private = node.attr.startswith("_") and not node.attr.startswith("__")
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if private and not own:
                out.append(f"{node.lineno}: touches private attribute .{node.attr}")
            if _stack_expr(node.value) and node.attr not in PROTOCOL_MEMBERS:
                out.append(f"{node.lineno}: uses .{node.attr} of a stack, not a protocol member")
    return out


@pytest.mark.parametrize("path", ABOVE_THE_SEAM, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_code_above_the_seam_uses_only_the_protocol(path):
    assert violations(path.read_text(), _module_of(path)) == []


def test_the_checker_catches_what_the_seam_forbids():
    bad = ("from unclip_probe.backends.world.stack import UnCLIP\n"
           "from ..backends.world import decode\n"
           "def f(stack, x):\n"
           "    stack._noise(1, 32, 0)\n"
           "    return stack.decoder_cfg.unet, x._private\n")
    found = violations(bad, "unclip_probe.probes.example")
    for expected in ("1: imports unclip_probe.backends.world.stack", "2: imports unclip_probe.backends.world",
                     "4: touches private attribute ._noise", "5: uses .decoder_cfg of a stack",
                     "5: touches private attribute ._private"):
        assert any(f.startswith(expected) for f in found), (expected, found)
    assert violations("def f(stack):\n    return stack.decode(stack.noise(1, 0)), stack.defaults.decode\n",
                      "unclip_probe.probes.example") == []


def test_every_protocol_member_is_named_once():
    """PROTOCOL_MEMBERS (what the seam test allows) and the Protocol class (what stacks must have) agree."""
    declared = {n for n in vars(Stack) if not n.startswith("_")} | set(Stack.__annotations__)
    assert declared == PROTOCOL_MEMBERS
