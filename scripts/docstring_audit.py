"""Counts what foadx's public docstrings leave out: exported names without a docstring, and
exported functions that raise a ``foadx.errors`` type their docstring does not mention.

    .venv/bin/python scripts/docstring_audit.py [--skip foadx.runtime] [--quiet]

Exported names: ``foadx.__all__`` and the ``__all__`` of every subpackage ``__init__.py`` (a
subpackage without ``__all__`` contributes the public functions and classes it imports). A
function or class is documented when it has its own docstring; a constant (``BACKENDS``,
``DEFAULT_ATOL``) when its defining module puts a string literal right after the assignment or a
``#:`` comment right before it.

Checked functions: every exported function, every public method, property, classmethod and
staticmethod an exported class defines itself (inherited ones are not counted), and the class's
construction (``__init__``/``__post_init__``, checked against the class docstring). For each, the
AST of its own body (nested functions and classes excluded) gives the ``raise X(...)`` / ``raise
X`` statements whose ``X`` resolves, in the defining module, to ``foadx.errors.FoadxError`` or a
subclass of it (ParityFailedError, ExportError, MissingLatencyError ...). A raised type counts as
mentioned when its docstring names it, or names one of its foadx parent classes inside a
``Raises:`` section. Re-raising a caught variable (``raise error``) is not resolved.

Prints both counts and the list; exits 0 (it measures, it does not gate).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import pkgutil
import re
import sys
import textwrap
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import foadx
from foadx.errors import FoadxError


@dataclass
class Checked:
    """One checked function: its dotted name, the foadx errors it raises and those not mentioned."""

    name: str
    documented: bool = True
    raised: list[str] = field(default_factory=list)
    unmentioned: list[str] = field(default_factory=list)


def subpackages() -> list[ModuleType]:
    found = [foadx]
    for info in pkgutil.iter_modules(foadx.__path__, "foadx."):
        if info.ispkg:
            found.append(importlib.import_module(info.name))
    return found


def exported_names(package: ModuleType) -> list[str]:
    if package is foadx:
        return [name for name in foadx.__all__ if name != "__version__"]
    names = getattr(package, "__all__", None)
    if names is not None:
        return list(names)
    return [
        name
        for name, value in vars(package).items()
        if not name.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and getattr(value, "__module__", "").startswith("foadx")
    ]


def defining_module(package: ModuleType, name: str) -> ModuleType:
    """Follows ``from X import name`` in the package's ``__init__`` (and ``foadx._EXPORTS``)."""
    if package is foadx:
        return importlib.import_module(foadx._EXPORTS[name])
    tree = ast.parse(inspect.getsource(package))
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and any(alias.name == name for alias in node.names):
            return defining_module(importlib.import_module(node.module), name)
    return package


def constant_documented(module: ModuleType, name: str) -> bool:
    lines = inspect.getsource(module).splitlines()
    body = ast.parse("\n".join(lines)).body
    for index, node in enumerate(body):
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if not any(isinstance(target, ast.Name) and target.id == name for target in targets):
            continue
        after = body[index + 1] if index + 1 < len(body) else None
        if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
            return True
        return node.lineno >= 2 and lines[node.lineno - 2].lstrip().startswith("#:")
    return False


def class_docstring(cls: type) -> str | None:
    """The docstring written in the class body (a dataclass without one gets a generated signature)."""
    try:
        return ast.get_docstring(ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0])
    except (OSError, TypeError):
        return cls.__dict__.get("__doc__")


def has_docstring(value: Any, module: ModuleType, name: str) -> bool:
    if inspect.isclass(value):
        return bool(class_docstring(value))
    if inspect.isfunction(value):
        return bool(value.__doc__)
    return constant_documented(module, name)


def resolve(node: ast.expr, namespace: dict[str, Any]) -> Any:
    if isinstance(node, ast.Call):
        return resolve(node.func, namespace)
    if isinstance(node, ast.Name):
        return namespace.get(node.id)
    if isinstance(node, ast.Attribute):
        owner = resolve(node.value, namespace)
        return getattr(owner, node.attr, None) if owner is not None else None
    return None


def own_raises(function: Any) -> list[type]:
    """The foadx error types a function's own body raises (nested defs excluded)."""
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):
        return []
    tree = ast.parse(source).body[0]
    namespace = vars(sys.modules[function.__module__])
    raised: list[type] = []
    stack = list(ast.iter_child_nodes(tree))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Raise) and node.exc is not None:
            kind = resolve(node.exc, namespace)
            if inspect.isclass(kind) and issubclass(kind, FoadxError) and kind not in raised:
                raised.append(kind)
        stack.extend(ast.iter_child_nodes(node))
    return raised


def names(text: str, word: str) -> bool:
    return re.search(rf"\b{word}\b", text) is not None


def mentioned(kind: type, doc: str) -> bool:
    if names(doc, kind.__name__):
        return True
    if "Raises:" not in doc:
        return False
    raises = doc.split("Raises:", 1)[1]
    parents = [base for base in kind.__mro__[1:] if isinstance(base, type) and issubclass(base, FoadxError)]
    return any(names(raises, parent.__name__) for parent in parents)


def check(name: str, functions: list[Any], doc: str | None) -> Checked:
    result = Checked(name, documented=bool(doc))
    for function in functions:
        for kind in own_raises(function):
            if kind.__name__ not in result.raised:
                result.raised.append(kind.__name__)
                if not mentioned(kind, doc or ""):
                    result.unmentioned.append(kind.__name__)
    return result


def unwrap(member: Any) -> Any:
    if isinstance(member, property):
        return member.fget
    if isinstance(member, (classmethod, staticmethod)):
        return member.__func__
    return member


def class_checks(qualified: str, cls: type) -> list[Checked]:
    construction = [unwrap(cls.__dict__[name]) for name in ("__init__", "__post_init__") if name in cls.__dict__]
    construction = [function for function in construction if inspect.isfunction(function)]
    checks = [check(f"{qualified}()", construction, class_docstring(cls))]
    for member_name, member in cls.__dict__.items():
        function = unwrap(member)
        if member_name.startswith("_") or not inspect.isfunction(function):
            continue
        checks.append(check(f"{qualified}.{member_name}", [function], function.__doc__))
    return checks


def audit(skip: tuple[str, ...]) -> tuple[list[str], list[str], list[Checked]]:
    names: list[str] = []
    undocumented: list[str] = []
    checks: list[Checked] = []
    seen: set[int] = set()
    for package in subpackages():
        if package.__name__.startswith(skip):
            continue
        for name in exported_names(package):
            value = getattr(package, name)
            qualified = f"{package.__name__}.{name}"
            names.append(qualified)
            if not has_docstring(value, defining_module(package, name), name):
                undocumented.append(qualified)
            if id(value) in seen or not (inspect.isfunction(value) or inspect.isclass(value)):
                continue
            seen.add(id(value))
            if inspect.isfunction(value):
                checks.append(check(qualified, [value], value.__doc__))
            elif value.__module__.startswith("foadx"):
                checks.extend(class_checks(qualified, value))
    return names, undocumented, checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip", action="append", default=[], help="leave out packages with this prefix")
    parser.add_argument("--quiet", action="store_true", help="print the counts only")
    args = parser.parse_args()
    names, undocumented, checks = audit(tuple(args.skip))
    raising = [entry for entry in checks if entry.raised]
    failing = [entry for entry in checks if entry.unmentioned]
    bare = [entry.name for entry in checks if not entry.documented and not entry.name.endswith("()")]
    print(f"{len(undocumented)} of {len(names)} exported names have no docstring")
    print(
        f"{len(failing)} of {len(checks)} exported functions/methods ({len(raising)} of them raise foadx errors) "
        "raise errors their docstring does not mention"
    )
    print(f"{len(bare)} of {len(checks)} exported functions/methods have no docstring")
    if args.quiet:
        return
    for name in undocumented:
        print(f"  no docstring: {name}")
    for name in bare:
        print(f"  no docstring (function/method): {name}")
    for entry in failing:
        print(f"  unmentioned:  {entry.name}: {', '.join(entry.unmentioned)}")


if __name__ == "__main__":
    main()
