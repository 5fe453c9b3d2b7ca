"""Every public function and method of snntorch_nengo carries type hints.

Public means a name without a leading underscore, in a module, or in a public class
(at any depth of nesting of public classes); ``__init__`` counts as public. Functions
nested inside other functions are private to them and not checked.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "snntorch_nengo"

# Signatures that torch parses itself: `torch.library.custom_op` reads the
# annotations to build the operator schema and accepts only its own set of types, and
# registrations must match the operator's schema. Triton kernels take
# `tl.constexpr` annotations with their own meaning.
EXEMPT_DECORATORS = {"custom_op", "register_fake", "register_autograd", "jit"}


def _decorator_names(node):
    for dec in node.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        if isinstance(target, ast.Attribute):
            yield target.attr
        elif isinstance(target, ast.Name):
            yield target.id


def _is_public(name):
    return not name.startswith("_") or name == "__init__"


def _problems(func, is_method):
    missing = []
    if func.returns is None:
        missing.append("return")
    args = func.args
    positional = args.posonlyargs + args.args
    skip_first = is_method and "staticmethod" not in set(_decorator_names(func))
    for i, arg in enumerate(positional + args.kwonlyargs):
        if skip_first and i == 0:
            continue  # self / cls
        if arg.annotation is None:
            missing.append(arg.arg)
    for arg in (args.vararg, args.kwarg):
        if arg is not None and arg.annotation is None:
            missing.append(arg.arg)
    return missing


def _walk(body, qualname, in_class, found):
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if not _is_public(node.name):
                continue
            if EXEMPT_DECORATORS & set(_decorator_names(node)):
                continue
            missing = _problems(node, in_class)
            if missing:
                found.append(
                    f"{qualname}{node.name} (line {node.lineno}): {', '.join(missing)}"
                )
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            _walk(node.body, f"{qualname}{node.name}.", True, found)
        elif isinstance(node, (ast.If, ast.Try)):
            # definitions under `if TYPE_CHECKING:` / `try: import ...` guards
            blocks = [node.body, node.orelse]
            blocks += [h.body for h in getattr(node, "handlers", [])]
            blocks.append(getattr(node, "finalbody", []))
            for block in blocks:
                _walk(block, qualname, in_class, found)


def missing_hints(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    _walk(tree.body, "", False, found)
    return found


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def test_checker_finds_missing_hints(tmp_path):
    src = tmp_path / "mod.py"
    src.write_text(
        "def f(a, b: int) -> int: ...\n"
        "def g(a: int): ...\n"
        "def _private(a): ...\n"
        "class C:\n"
        "    def __init__(self, x): ...\n"
        "    def m(self, *args, **kwargs) -> None: ...\n"
        "    def k(self, *args: int, **kwargs: str) -> None: ...\n"
        "    @staticmethod\n"
        "    def s(x) -> None: ...\n"
        "    def n(self, *, k, **opts) -> None: ...\n"
        "class _Hidden:\n"
        "    def m(self, x): ...\n"
        "@torch.library.custom_op('lib::op', mutates_args=())\n"
        "def op(x): ...\n"
    )
    found = missing_hints(src)
    assert [line.split(" ")[0] for line in found] == [
        "f",
        "g",
        "C.__init__",
        "C.m",
        "C.s",
        "C.n",
    ]
    assert found[0].endswith(": a")
    assert found[2].endswith(": return, x")
    assert found[3].endswith(": args, kwargs")
    assert found[5].endswith(": k, opts")


@pytest.mark.parametrize(
    "path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE.parent))
)
def test_public_functions_have_type_hints(path):
    found = missing_hints(path)
    assert not found, "missing type hints:\n" + "\n".join(found)
