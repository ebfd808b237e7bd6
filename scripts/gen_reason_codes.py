"""Generates docs/REASON_CODES.md, the catalogue of every reason code, from the code itself.

Run from anywhere: ``python scripts/gen_reason_codes.py``. ``--check`` exits non-zero when the
committed catalogue differs from what the code says now (CI runs it, as gen_protos --check).

Nothing here is a list kept by hand: the codes are found by reading the source.

- **Python** (``idverify/**/*.py``, parsed, never imported): a code is a literal that reaches a
  ``reason`` slot: the ``reason=`` of any call, a positional argument in a parameter named
  ``reason``, an exception class's ``default_reason``, a name holding reasons (``_REASONS = {...}``),
  a module constant used as one; a reason that is a parameter of its function (``reason=reason``,
  ``f"{purpose.upper()}_RATE_LIMITED"``) takes the literals its callers pass.
- **Lua** (``idverify/store/lua/*.lua``): ``reason = 'X'`` (audit entries), ``'reason', 'X'``
  (a stored verification's reason), ``return 'REJECTED', 'X'``, a literal in a function's
  ``reason`` parameter, and lists named after reasons.

A call's callees are found by types, the name of a method only as a last resort:

- a value's class comes from annotations (parameters, locals, ``self.x: T``, dataclass fields,
  a property's return, ``except T as e``), from what is assigned (``self._x = param`` takes the
  parameter's annotation, ``self._x = Foo(...)`` or ``x = a or Foo()`` the class made), from a
  called function's return annotation, from a container typed by its elements (``for v in xs``,
  ``xs.get(k)``), and a class named is itself (``Keys.of(...)``, a static method);
- a call on a ``Protocol``-typed value runs that method of every class outside NOT_SERVER that
  defines each of the Protocol's methods (the Redis adapter in store/ is what a server runs);
- a value known to be no object of idverify's (FOREIGN: a str, a dict literal, a module or an
  object of a library, what a method none of ours defines gives) runs none of idverify's methods;
- only a value of unknown type is followed by the method's name, when at most UNTYPED_CANDIDATES
  functions share it (without it the catalogue is the same today; it is a safety net).

A reason that is a parameter passed on to a helper's template (``judge_counted(reply, purpose)``
to ``refuse_at_limit``) takes the literals of the outer callers.

Each code's status comes from the exception that carries it (its class's ``status``); a code a
Lua script hands to Python, which raises it, takes the status of that raise. The RPCs that can
return a code come from a call graph: every servicer method, the functions it calls (resolved
through annotations, attributes and imports), and the Lua scripts those run; the interceptor's
codes reach every RPC that needs a token. Meaning and advice are the raise site's own message
and field, docs/VENDORS.md's tables of step outcomes for a vendor's reasons, and per-status
advice, refined by scripts/reason_code_notes.toml where a code needs more than that.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import re
import sys
import tomllib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = ROOT / "docs" / "REASON_CODES.md"
CODE_SHAPE = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*")
ERROR_ROOT = "IdverifyError"
VERIFICATION_STATUSES = {
    "REJECTED",
    "EXPIRED",
    "VERIFIED",
    "NEEDS_GUARDIAN_CONSENT",
    "PENDING",
    "CHALLENGE_SENT",
}
# A method called on an object of unknown type is taken for every function of its name when so
# few share it: more, and the name is too common (get, run) to say which.
UNTYPED_CANDIDATES = 2
# A value known to be no object of idverify's (a str, a dict, a Path, a module of the standard
# library or a dependency): a method called on it runs none of idverify's functions, however few
# share its name (``value.encode()`` is no ``Argon2Params.encode``).
FOREIGN = "<foreign>"
# A builtin value whose parts are builtin too: a str, a line of bytes, an element of list[str].
BUILTIN = "<builtin>"
_BUILTIN_NAMES = frozenset(dir(builtins))  # open, sorted, len...: what they give is no idverify object
# Annotations that say the value is a builtin one (not ``object`` or an exception: ours may be).
_BUILTIN_VALUES = frozenset(
    {BUILTIN, "str", "bytes", "bytearray", "memoryview", "int", "float", "complex", "bool"}
    | {"dict", "list", "set", "frozenset", "tuple", "range"}
)
_LITERALS = (
    *(ast.Constant, ast.JoinedStr, ast.List, ast.Dict, ast.Set, ast.Tuple),
    *(ast.ListComp, ast.DictComp, ast.SetComp, ast.GeneratorExp),
)
# Modules whose names in an annotation say nothing of the value's class (Any, Callable, Protocol).
_TYPING_MODULES = ("typing", "typing_extensions", "collections.abc", "__future__")
# The interceptor runs before every RPC that needs a token: what it can raise, every such RPC can.
INTERCEPTOR_MODULE = "idverify.services.interceptor"
# Modules that are no part of a running server's answers: local fakes of vendors, test helpers.
NOT_SERVER = {"idverify.vendors.fakes", "idverify.testing"}
# Literals that look like codes but are answers between the server's own parts, never sent.
NOT_CODES = {"OK", "GONE", "CHANGED", "RETRY", "STATE", "MOVED", "LIMITED", "LOCKED"}
# Kinds of place a code appears in, as a caller sees it.
ERROR, OUTCOME, AUDIT = "error", "outcome", "audit"

# What the caller should do, by gRPC status, unless the code's note says more.
ADVICE = {
    "INVALID_ARGUMENT": "Fix the field named in BadRequest (and ErrorInfo's `field`) and send again; "
    "the same request fails the same way.",
    "NOT_FOUND": "Check the id; it may be unknown, expired, or another tenant's. Do not retry unchanged.",
    "FAILED_PRECONDITION": "Do not retry unchanged: the state must change first (see the meaning).",
    "ALREADY_EXISTS": "Use the existing resource.",
    "RESOURCE_EXHAUSTED": "Wait for RetryInfo's retry_delay, then retry; do not loop sooner.",
    "UNAUTHENTICATED": "Send `authorization: Bearer <token>` with a live client's token.",
    "PERMISSION_DENIED": "Use a client whose role and tenant allow the call; retrying does not help.",
    "UNAVAILABLE": "Retry with backoff (StartVerification with the same request_id); "
    "RetryInfo, when sent, says when.",
    "UNIMPLEMENTED": "The server does not offer this; do not retry.",
    "OUT_OF_RANGE": "The log has not reached that position yet: retry later, or ask for a smaller one.",
    OUTCOME: "Final for this verification: tell the person, and start a new one if it makes sense "
    "(fallback_method_ids lists methods that may still work).",
    AUDIT: "Nothing: it explains an audit entry (QueryEvents).",
}

# Where a code's own words are not enough for a caller, a note on its meaning or on what to do:
# prose kept as data, beside this script, for whoever writes the catalogue's words.
NOTES_FILE = Path(__file__).with_name("reason_code_notes.toml")


def read_notes(path: Path = NOTES_FILE) -> dict[str, tuple[str, str]]:
    """Each noted code's (meaning, action); an empty string where the note leaves one out."""
    with path.open("rb") as file:
        notes = tomllib.load(file)
    return {code: (note.get("meaning", ""), note.get("action", "")) for code, note in notes.items()}


NOTES = read_notes()

# The command line's modules (idverify/cli/): a code only they reach is no caller's concern,
# but is listed.
COMMAND_PACKAGE = "idverify.cli."


@dataclass(frozen=True)
class Site:
    """One place a code is given: what it is, how it reaches the caller, and from where."""

    code: str
    kind: str
    status: str
    where: str  # path:line
    owner: str  # the function (module.Class.method) or "lua:<script>" it belongs to
    message: str = ""
    field: str = ""
    # Held or returned for a raise elsewhere to send (a name holding reasons, a Lua script's list):
    # it takes the status of the raise that sends it, and is no verification outcome of its own.
    handed: bool = False


@dataclass
class Function:
    """A function or method (or a module-level table, read where it is named)."""

    qualname: str
    module: Module
    node: ast.FunctionDef | ast.AsyncFunctionDef
    cls: Klass | None
    params: list[str] = field(default_factory=list)
    calls: set[str] = field(default_factory=set)  # qualnames of functions and classes called
    scripts: set[str] = field(default_factory=set)  # Lua scripts run
    templates: list[tuple[str, str, str, ast.AST]] = field(
        default_factory=list
    )  # (param, pattern, status, node)


@dataclass
class Klass:
    """A class: its methods, bases, attribute types, and as an error its status and default reason."""

    qualname: str
    name: str
    module: Module
    node: ast.ClassDef
    bases: list[str] = field(default_factory=list)  # simple names
    methods: dict[str, Function] = field(default_factory=dict)
    attrs: dict[str, str] = field(default_factory=dict)  # attribute -> class simple name
    fields: list[str] = field(default_factory=list)  # dataclass fields, in order
    status: str = ""
    default_reason: str = ""


@dataclass
class Module:
    """A parsed module with its imports, constant codes and module-level tables."""

    name: str
    path: Path
    tree: ast.Module
    imports: dict[str, str] = field(default_factory=dict)  # local name -> dotted target
    constants: dict[str, str] = field(default_factory=dict)  # NAME -> code-shaped literal
    tables: dict[str, ast.AST] = field(default_factory=dict)  # module-level name -> its value


def _rel(path: Path) -> str:
    """A path as the catalogue names it: from the package directory on (idverify/...)."""
    parts = path.parts
    return "/".join(parts[len(parts) - 1 - parts[::-1].index("idverify") :])


def _literal_codes(node: ast.AST | None) -> list[str]:  # noqa: PLR0911 - a return per kind of node
    """Code-shaped string literals of an expression (through `or`, `if`, tuples, dict values)."""
    if node is None:
        return []
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value] if CODE_SHAPE.fullmatch(node.value) else []
    if isinstance(node, ast.BoolOp):
        return [c for value in node.values for c in _literal_codes(value)]
    if isinstance(node, ast.IfExp):
        return _literal_codes(node.body) + _literal_codes(node.orelse)
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [c for element in node.elts for c in _literal_codes(element)]
    if isinstance(node, ast.Dict):
        return [c for value in node.values for c in _literal_codes(value)]
    return []


def _type_name(annotation: ast.AST | None) -> str:
    """The first class name an annotation mentions (``X | None`` -> X, ``"X"`` -> X)."""
    node = _type_node(annotation)
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


def _type_node(annotation: ast.AST | None) -> ast.Name | ast.Attribute | None:  # noqa: PLR0911 - per kind
    """The name or dotted name that ``_type_name`` reads the class name from."""
    if annotation is None:
        return None
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        try:
            return _type_node(ast.parse(annotation.value, mode="eval").body)
        except SyntaxError:
            return None
    if isinstance(annotation, ast.Name | ast.Attribute):
        return annotation
    if isinstance(annotation, ast.BinOp):
        return _type_node(annotation.left) or _type_node(annotation.right)
    if isinstance(annotation, ast.Subscript):
        # Final[X], X | None, and containers: an element of Mapping[str, Verifier] is a Verifier.
        elements = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else [annotation.slice]
        if len(elements) > 1 and isinstance(elements[-1], ast.Constant) and elements[-1].value is Ellipsis:
            elements = elements[:-1]  # tuple[X, ...]
        inner = elements[-1]
        if _type_name(annotation.value) in _WRAPPERS:
            return _type_node(inner)
        return _type_node(annotation.value)
    return None


# A container's methods that give its elements (or, for ``values()``, what iterates over them).
_ELEMENT_ACCESS = frozenset({"get", "pop", "setdefault", "values", "copy"})

_WRAPPERS = {
    "Final",
    "Optional",
    "ClassVar",
    "Mapping",
    "MutableMapping",
    "dict",
    "Sequence",
    "list",
    "tuple",
    "Iterable",
    "Iterator",
    "set",
    "frozenset",
    "Awaitable",
    "Coroutine",
    "AsyncIterator",
    "type",
}


def _message(call: ast.Call) -> str:
    """An exception's message as written: literal text, ``…`` for what is filled in."""
    if not call.args:
        return ""
    first = call.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    if isinstance(first, ast.JoinedStr):
        return "".join(
            part.value if isinstance(part, ast.Constant) and isinstance(part.value, str) else "…"
            for part in first.values
        )
    return ""


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _template(node: ast.AST, params: list[str]) -> tuple[str, str] | None:
    """``f"{p.upper()}_X"`` or ``f"{p}_X"`` over a parameter: (parameter, pattern with {})."""
    if not isinstance(node, ast.JoinedStr):
        return None
    param, pattern = "", ""
    for part in node.values:
        if isinstance(part, ast.Constant) and isinstance(part.value, str):
            pattern += part.value
            continue
        assert isinstance(part, ast.FormattedValue)  # noqa: S101 - the only other part an f-string has
        value = part.value
        if (
            isinstance(value, ast.Call)
            and isinstance(value.func, ast.Attribute)
            and value.func.attr == "upper"
        ):
            value = value.func.value
        if not isinstance(value, ast.Name) or value.id not in params or param:
            return None
        param, pattern = value.id, pattern + "{}"
    return (param, pattern) if param else None


class Source:
    """The parsed package: modules, classes, functions, and the sites of codes."""

    def __init__(self, root: Path = ROOT) -> None:
        self.modules: dict[str, Module] = {}
        self.classes: dict[str, list[Klass]] = defaultdict(list)  # simple name -> classes
        self.functions: dict[str, Function] = {}
        self.by_name: dict[str, list[Function]] = defaultdict(list)
        # callee qualname -> the calls that may run it, and the function each is in
        self.callers: dict[str, list[tuple[Function, ast.Call]]] = defaultdict(list)
        self.sites: list[Site] = []
        self.lua_sites: dict[str, list[Site]] = {}
        self.lua_calls: dict[str, set[str]] = {}
        self._resolving: set[str] = set()  # module-level names whose type is being found
        self.root = root
        self.lua_dir = root / "idverify" / "store" / "lua"
        # The scripts a call may name: not the prelude and the chain's runner, which every script
        # and chain is built from (``store.scripts``): naming them reaches no code of their own.
        self.lua_names = {path.stem for path in self.lua_dir.glob("*.lua") if not path.stem.startswith("_")}
        for path in sorted((root / "idverify").rglob("*.py")):
            relative = path.relative_to(root).with_suffix("")
            name = ".".join(relative.parts).removesuffix(".__init__")
            # A package in NOT_SERVER takes its modules with it (idverify.testing's in-memory ports).
            if relative.parts[:2] == ("idverify", "v1") or any(
                name == excluded or name.startswith(f"{excluded}.") for excluded in NOT_SERVER
            ):
                continue  # generated from the contract, or stand-ins for tests
            self.modules[name] = Module(name, path, ast.parse(path.read_text(encoding="utf-8")))
        for module in self.modules.values():
            self._index(module)
        for klass in (k for group in self.classes.values() for k in group):
            self._class_facts(klass)
        for function in self.functions.values():
            self._scan(function)
        self._read_lua()

    # ---- the index
    def _index(self, module: Module) -> None:
        # Imports under a top-level ``if`` (``if TYPE_CHECKING:``) name the classes annotations use.
        guarded = [item for node in module.tree.body if isinstance(node, ast.If) for item in node.body]
        for node in [*module.tree.body, *guarded]:
            if isinstance(node, ast.ImportFrom) and node.module:
                module.imports.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
            elif isinstance(node, ast.Import):
                module.imports.update({a.asname or a.name.split(".")[0]: a.name for a in node.names})
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                self._index_assignment(module, node)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self._add_function(module, node, None)
            elif isinstance(node, ast.ClassDef):
                klass = Klass(f"{module.name}.{node.name}", node.name, module, node)
                klass.bases = [_type_name(base) for base in node.bases]
                self.classes[node.name].append(klass)
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        klass.methods[item.name] = self._add_function(module, item, klass)

    def _index_assignment(self, module: Module, node: ast.Assign | ast.AnnAssign) -> None:
        """A module-level name: a constant code, or a table read where it is named."""
        value = node.value
        if value is None:
            return
        for target in (t for t in _targets(node) if isinstance(t, ast.Name)):
            module.tables[target.id] = value
            self._add_function(module, _as_function(target.id, node), None)
            if _literal_codes(value) and isinstance(value, ast.Constant):
                module.constants[target.id] = str(value.value)

    def _add_function(
        self, module: Module, node: ast.FunctionDef | ast.AsyncFunctionDef, klass: Klass | None
    ) -> Function:
        qualname = f"{klass.qualname if klass else module.name}.{node.name}"
        arguments = node.args
        params = [a.arg for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)]
        function = Function(qualname, module, node, klass, params)
        self.functions[qualname] = function
        self.by_name[node.name].append(function)
        return function

    def annotation_type(self, annotation: ast.AST | None, module: Module) -> str:
        """The class name an annotation gives (as ``_type_name``), or FOREIGN for ``asyncio.Event``."""
        named = _type_node(annotation)
        root: ast.expr | None = named
        while isinstance(root, ast.Attribute):
            root = root.value
        if isinstance(root, ast.Name) and root is not named:
            target = module.imports.get(root.id, "")  # the module a dotted annotation starts from
            if target and not target.startswith(("idverify", *_TYPING_MODULES)):
                return FOREIGN
        return _type_name(annotation)

    def _class_facts(self, klass: Klass) -> None:
        for item in klass.node.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                klass.attrs[item.target.id] = self.annotation_type(item.annotation, klass.module)
                klass.fields.append(item.target.id)
            names = [t.id for t in _targets(item) if isinstance(t, ast.Name)]
            value = getattr(item, "value", None)
            if "status" in names and isinstance(value, ast.Attribute):
                klass.status = value.attr
            if "default_reason" in names and isinstance(value, ast.Constant):
                klass.default_reason = str(value.value)
        for method in klass.methods.values():
            self._attribute_types(klass, method)

    def _attribute_types(self, klass: Klass, method: Function) -> None:
        """``self.x: T``, ``self.x = param`` (annotated) and ``self.x = T(...)`` in a method."""
        arguments = method.node.args
        annotations = {
            a.arg: self.annotation_type(a.annotation, klass.module)
            for a in (*arguments.args, *arguments.kwonlyargs)
        }
        for node in ast.walk(method.node):
            targets = [t for t in _targets(node) if isinstance(t, ast.Attribute) and _is_self_attr(t)]
            if len(targets) != 1:
                continue
            attribute = targets[0]
            assert isinstance(attribute, ast.Attribute)  # noqa: S101 - filtered above
            value = getattr(node, "value", None)
            if isinstance(node, ast.AnnAssign):
                klass.attrs.setdefault(attribute.attr, self.annotation_type(node.annotation, klass.module))
            elif value is not None and (assigned := _assigned_type(value, annotations)):
                klass.attrs.setdefault(attribute.attr, assigned)

    # ---- classes and types
    def klass(self, name: str, module: Module | None = None) -> Klass | None:
        """The class a name stands for in ``module`` (its import, or its own); else the first of the name."""
        found = self.classes.get(name)
        if not found:
            return None
        if module is not None and len(found) > 1:
            target = module.imports.get(name, f"{module.name}.{name}")
            return next((k for k in found if k.qualname == target), found[0])
        return found[0]

    def ancestry(self, klass: Klass) -> Iterator[Klass]:
        """The class and its bases, nearest first."""
        seen: set[str] = set()
        todo = [klass]
        while todo:
            current = todo.pop(0)
            if current.qualname in seen:
                continue
            seen.add(current.qualname)
            yield current
            todo.extend(k for base in current.bases if (k := self.klass(base, current.module)) is not None)

    def is_error(self, klass: Klass) -> bool:
        """Whether the class is an IdverifyError, whose reason reaches the caller."""
        return any(k.name == ERROR_ROOT for k in self.ancestry(klass))

    def status_of(self, klass: Klass) -> str:
        """The gRPC status an error class maps to."""
        return next((k.status for k in self.ancestry(klass) if k.status), "FAILED_PRECONDITION")

    def attr_type(self, klass: Klass, attr: str) -> str:
        """The class name an attribute is typed with, here or in a base."""
        for k in self.ancestry(klass):
            if attr in k.attrs:
                return k.attrs[attr]
            method = k.methods.get(attr)
            if method is not None and any(_type_name(d) == "property" for d in method.node.decorator_list):
                return self.annotation_type(method.node.returns, k.module)
        return ""

    def subclasses(self, klass: Klass) -> list[Klass]:
        """The classes that name it as a base."""
        return [k for group in self.classes.values() for k in group if klass.name in k.bases]

    def methods_named(self, klass: Klass, name: str) -> list[Function]:
        """What ``obj.name()`` may run for an ``obj`` of this class: its own, overrides, implementers."""
        found = [k.methods[name] for k in self.ancestry(klass) if name in k.methods][:1]
        found += [k.methods[name] for k in self.subclasses(klass) if name in k.methods]
        # Structural: the classes that define every method a Protocol declares, each taking as
        # many parameters (a Verifier's check(context) is not a request's check()).
        if "Protocol" in klass.bases:
            declared = {m: f.node.args for k in self.ancestry(klass) for m, f in k.methods.items()}
            found += [
                f
                for f in self.by_name.get(name, [])
                if f.cls is not None and "Protocol" not in f.cls.bases and self._implements(f.cls, declared)
            ]
        return found

    def _implements(self, klass: Klass, declared: dict[str, ast.arguments]) -> bool:
        """Whether a class has each declared method (its own or inherited), callable as declared."""
        for name, wanted in declared.items():
            method = next((k.methods[name] for k in self.ancestry(klass) if name in k.methods), None)
            if method is None or not _accepts(method.node.args, wanted):
                return False
        return True

    def _type_of(  # noqa: PLR0911 - a return per kind of expression
        self, expr: ast.AST, function: Function, local_types: dict[str, str]
    ) -> Klass | None:
        if isinstance(expr, ast.Name):
            if expr.id == "self" and function.cls is not None:
                return function.cls
            if expr.id in local_types:
                name = local_types[expr.id]
                return self.klass(name, function.module) if name else None
            return self._global_type(expr.id, function)
        if isinstance(expr, ast.Attribute):
            owner = self._type_of(expr.value, function, local_types)
            return self.klass(self.attr_type(owner, expr.attr), owner.module) if owner else None
        if isinstance(expr, ast.BoolOp | ast.IfExp):
            operands = expr.values if isinstance(expr, ast.BoolOp) else [expr.body, expr.orelse]
            return next(
                (found for v in operands if (found := self._type_of(v, function, local_types)) is not None),
                None,
            )
        if isinstance(expr, ast.Subscript | ast.Await):  # a Subscript: an element of a typed container
            return self._type_of(expr.value, function, local_types)
        if isinstance(expr, ast.Call):
            return self._call_type(expr, function, local_types)
        return None

    def _call_type(self, call: ast.Call, function: Function, local_types: dict[str, str]) -> Klass | None:
        """What a call gives: the class it makes, an element of a container, a return annotation's."""
        made = self.klass(_made_type(call), function.module)
        if made is not None:
            return made
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr in _ELEMENT_ACCESS:
            # ``self._tenants.get(t)``: a container typed by its elements gives an element
            # (unless the class has a method of that name: then its return type says).
            element = self._type_of(func.value, function, local_types)
            if element is not None and not any(func.attr in k.methods for k in self.ancestry(element)):
                return element
        for callee in self._callees(call, function, local_types):
            returned = (
                self.klass(_type_name(callee.node.returns), callee.module)
                if isinstance(callee, Function)
                else None
            )
            if returned is not None:
                return returned
        return None

    def _global_type(self, name: str, function: Function) -> Klass | None:
        """A module-level name's class: a class itself (``Keys.method()``), a module-level object."""
        module = function.module
        target = module.imports.get(name, f"{module.name}.{name}")
        klass = self.klass(name, module)
        if klass is not None and klass.qualname == target:
            return klass
        value = module.tables.get(name)
        if value is None or name in self._resolving:
            return None
        self._resolving.add(name)  # a module-level name defined through itself is left untyped
        try:
            return self._type_of(value, function, {})
        finally:
            self._resolving.discard(name)

    def _foreign_type(self, name: str, module: Module) -> bool:
        """Whether a type name (as ``_type_name`` gives it) names no class of idverify's."""
        if not name or self.klass(name, module) is not None:
            return False
        if name in {FOREIGN, *_BUILTIN_VALUES}:
            return True
        target = module.imports.get(name, "")
        home, _, alias = target.rpartition(".")
        if home in self.modules and alias in self.modules[home].tables:
            # An alias of a type where it is defined (``RedisClient = aioredis.Redis``).
            value = self.modules[home].tables[alias]
            aliased = self.annotation_type(value, self.modules[home])
            return (
                isinstance(value, ast.Name | ast.Attribute)
                and aliased != alias
                and self._foreign_type(aliased, self.modules[home])
            )
        return bool(target) and not target.startswith(_TYPING_MODULES)

    def _foreign(  # noqa: PLR0911 - a return per kind of expression
        self, expr: ast.AST, function: Function, local_types: dict[str, str]
    ) -> bool:
        """Whether an expression's value is surely no object of idverify's (see FOREIGN)."""
        if isinstance(expr, _LITERALS):
            return True
        if isinstance(expr, ast.Await):
            return self._foreign(expr.value, function, local_types)
        if isinstance(expr, ast.Subscript):  # ``name[4:]`` of a str; not ``parts[0]`` of a list literal
            return self._builtin_elements(expr.value, function, local_types)
        if isinstance(expr, ast.Name):
            return self._foreign_name(expr.id, function, local_types)
        if isinstance(expr, ast.Attribute):
            owner = self._type_of(expr.value, function, local_types)
            if owner is not None:
                return self._foreign_type(self.attr_type(owner, expr.attr), owner.module)
            return self._foreign(expr.value, function, local_types)
        if isinstance(expr, ast.Call):
            if self._foreign(expr.func, function, local_types):
                return True  # made or returned by what is no idverify's
            func = expr.func
            if (
                isinstance(func, ast.Attribute)
                and not self.by_name.get(func.attr)
                and self._type_of(func.value, function, local_types) is None
            ):
                return True  # a method none of ours has (``value.strip()``): a library's value's
            callees = self._callees(expr, function, local_types)
            return bool(callees) and all(
                isinstance(c, Function)
                and self._foreign_type(_type_name(c.node.returns), c.module)
                and not _returns_container(c.node.returns)
                for c in callees
            )
        return False

    def _foreign_name(self, name: str, function: Function, local_types: dict[str, str]) -> bool:
        """A local typed as foreign, a module or name imported from outside, a builtin function."""
        module = function.module
        if name in local_types:
            return self._foreign_type(local_types[name], module)
        target = module.imports.get(name)
        if target is not None:
            return not target.startswith(("idverify", *_TYPING_MODULES))
        value = module.tables.get(name)
        if value is not None and name not in self._resolving:  # ``log = logging.getLogger()``
            self._resolving.add(name)
            try:
                return self._foreign(value, function, {})
            finally:
                self._resolving.discard(name)
        local = f"{module.name}.{name}"
        return name in _BUILTIN_NAMES and local not in self.functions and not self.classes.get(name)

    def _callees(  # noqa: PLR0911 - a return per way of naming a callee
        self, call: ast.Call, function: Function, local_types: dict[str, str]
    ) -> list[Function | Klass]:
        """What a call may run: resolved through imports and types, else by a name few functions have."""
        func = call.func
        module = function.module
        if isinstance(func, ast.Name):
            target = module.imports.get(func.id, f"{module.name}.{func.id}")
            if target in self.functions:
                return [self.functions[target]]
            klass = self.klass(func.id, module)
            if klass is not None and (target.endswith(f".{func.id}")):
                return [klass]
            return []
        if not isinstance(func, ast.Attribute):
            return []
        if isinstance(func.value, ast.Name) and func.value.id in module.imports:
            dotted = f"{module.imports[func.value.id]}.{func.attr}"
            if dotted in self.functions:
                return [self.functions[dotted]]
            klass = self.klass(func.value.id, module)
            if klass is not None and func.attr in klass.methods:
                return [klass.methods[func.attr]]
        owner = self._type_of(func.value, function, local_types)
        if owner is not None:
            return list(self.methods_named(owner, func.attr))
        if self._foreign(func.value, function, local_types):
            return []
        candidates = self.by_name.get(func.attr, [])
        unique_enough = 0 < len(candidates) <= UNTYPED_CANDIDATES and not func.attr.startswith("__")
        return list(candidates) if unique_enough else []

    def _referenced(self, module: Module, name: str) -> set[str]:
        """What a name stands for where it is not called: a callback, or a module-level table."""
        target = module.imports.get(name, f"{module.name}.{name}")
        return {target} if target in self.functions else set()

    # ---- the sites of one function
    def _scan(self, function: Function) -> None:
        """The sites, calls, Lua scripts and reason templates of one function."""
        local_types = self._local_types(function)
        where = _rel(function.module.path)
        for item in ast.walk(function.node):
            self.sites += self._held_codes(function, item, where)
            if isinstance(item, ast.Name) and isinstance(item.ctx, ast.Load):
                function.calls |= self._referenced(function.module, item.id)
            if isinstance(item, ast.Call):
                self._scan_call(function, item, local_types, where)

    def _local_types(self, function: Function) -> dict[str, str]:
        arguments = function.node.args
        module = function.module
        types = {
            a.arg: self.annotation_type(a.annotation, module)
            for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)
        }
        for item in ast.walk(function.node):
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                types[item.target.id] = self.annotation_type(item.annotation, module)
            elif isinstance(item, ast.For | ast.AsyncFor | ast.comprehension):
                self._loop_types(item.target, item.iter, function, types)
            elif isinstance(item, ast.ExceptHandler) and item.name and item.name not in types:
                types[item.name] = self.annotation_type(item.type, module)
            elif (
                isinstance(item, ast.Assign)
                and len(item.targets) == 1
                and isinstance(item.targets[0], ast.Tuple)
                and not isinstance(item.value, ast.Tuple)
            ):
                self._loop_types(item.targets[0], item.value, function, types)  # ``a, _, b = s.partition()``
            elif isinstance(item, ast.Assign) and len(item.targets) == 1:
                for target, value in _pairs(item.targets[0], item.value):
                    name = target.id
                    if name not in types and (found := self._type_of(value, function, types)) is not None:
                        types[name] = found.name
                    elif name not in types and self._foreign(value, function, types):
                        types[name] = FOREIGN
        return types

    def _loop_types(
        self, target: ast.expr, iterable: ast.expr, function: Function, types: dict[str, str]
    ) -> None:
        """A loop's names: an element of a container typed by its elements, or builtin values."""
        if isinstance(target, ast.Name) and target.id not in types:
            element = self._type_of(iterable, function, types)
            if element is not None:
                types[target.id] = element.name
                return
        if self._builtin_elements(iterable, function, types):
            for name in (n for n in ast.walk(target) if isinstance(n, ast.Name)):
                types.setdefault(name.id, BUILTIN)

    def _library_call(self, call: ast.Call, function: Function, types: dict[str, str]) -> bool:
        """A library's method on a library's value, given only library values: it gives none of ours.

        (``asyncio.gather(*coroutines)`` may give ours: it is given ours.)
        """
        func = call.func
        arguments = [*call.args, *(k.value for k in call.keywords)]
        return (
            isinstance(func, ast.Attribute)
            and not self.by_name.get(func.attr)
            and self._foreign(func.value, function, types)
            and all(
                isinstance(a, ast.Constant | ast.Name | ast.Attribute) and self._foreign(a, function, types)
                for a in arguments
            )
        )

    def _builtin_elements(  # noqa: PLR0911 - a return per kind of expression
        self, iterable: ast.expr, function: Function, types: dict[str, str]
    ) -> bool:
        """Whether a loop's values are builtin ones: of a str, of a container annotated ``list[str]``."""
        if isinstance(iterable, ast.Constant | ast.JoinedStr):
            return True
        if isinstance(iterable, ast.BoolOp):  # ``metadata or ()``
            return all(
                self._builtin_elements(v, function, types)
                or (isinstance(v, ast.Tuple | ast.List) and not v.elts)
                for v in iterable.values
            )
        if isinstance(iterable, ast.Call) and self._library_call(iterable, function, types):
            return True
        if isinstance(iterable, ast.Call) and isinstance(iterable.func, ast.Attribute):
            if iterable.func.attr in {"split", "splitlines", "findall", "partition", "rpartition"}:
                return self._foreign(iterable.func.value, function, types)  # a str's or a pattern's
            if iterable.func.attr in {"items", "values", "keys"}:
                iterable = iterable.func.value
        if isinstance(iterable, ast.Name):
            return types.get(iterable.id, "") in _BUILTIN_VALUES
        if isinstance(iterable, ast.Attribute):
            owner = self._type_of(iterable.value, function, types)
            return owner is not None and self.attr_type(owner, iterable.attr) in _BUILTIN_VALUES
        return False

    def _held_codes(self, function: Function, item: ast.AST, where: str) -> list[Site]:
        """Codes held for a raise elsewhere: names of reasons, returned tags, vendor code tables."""
        owner = function.qualname
        if isinstance(item, ast.Assign | ast.AnnAssign) and any(
            _names_reasons(t.id) for t in _targets(item) if isinstance(t, ast.Name)
        ):
            return [
                Site(c, OUTCOME, "", f"{where}:{item.lineno}", owner, handed=True)
                for c in _literal_codes(item.value)
            ]
        if isinstance(item, ast.Dict) and _is_code_table(function.module):
            return [
                Site(code, OUTCOME, "", f"{where}:{value.lineno}", owner)
                for value in item.values
                if isinstance(value, ast.Constant)
                for code in _literal_codes(value)
            ]
        if isinstance(item, ast.Return) and function.module.name != INTERCEPTOR_MODULE:
            returned = item.value.elts if isinstance(item.value, ast.Tuple) else [item.value]
            constants = [
                v.value for v in returned if isinstance(v, ast.Constant) and isinstance(v.value, str)
            ]
            return [
                Site(c, OUTCOME, "", f"{where}:{item.lineno}", owner, handed=True)
                for c in constants
                if CODE_SHAPE.fullmatch(c) and c not in NOT_CODES
            ]
        return []

    def _error_class(self, callees: list[Function | Klass]) -> tuple[Klass | None, bool]:
        """The error a call makes: (class, whether the call is its constructor)."""
        for callee in callees:
            if isinstance(callee, Klass) and self.is_error(callee):
                return callee, True
        for callee in callees:
            made = (
                self.klass(_type_name(callee.node.returns), callee.module)
                if isinstance(callee, Function)
                else None
            )
            if made is not None and self.is_error(made):
                return made, False
        return None, False

    def _reason_slots(self, call: ast.Call, callees: list[Function | Klass]) -> list[ast.expr]:
        """The arguments that land in a ``reason``: by keyword, or by position in a callee."""
        reason = _keyword(call, "reason")
        slots = [reason] if reason is not None else []
        for callee in callees:
            names = callee.params if isinstance(callee, Function) else _init_params(self, callee)
            if isinstance(callee, Function) and callee.cls is not None and names[:1] in (["self"], ["cls"]):
                names = names[1:]
            slots += [
                arg for index, arg in enumerate(call.args) if index < len(names) and names[index] == "reason"
            ]
        return slots

    def _scan_call(self, function: Function, call: ast.Call, local_types: dict[str, str], where: str) -> None:
        callees = self._callees(call, function, local_types)
        function.calls |= {callee.qualname for callee in callees}
        for callee in callees:
            self.callers[callee.qualname].append((function, call))
        first = call.args[0] if call.args else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value in self.lua_names:
            function.scripts.add(first.value)
        error, constructed = self._error_class(callees)
        kind, status = (ERROR, self.status_of(error)) if error else (OUTCOME, "")
        field_node = _keyword(call, "field")
        field_text = str(field_node.value) if isinstance(field_node, ast.Constant) and constructed else ""

        def site(code: str) -> Site:
            message = _message(call) if constructed else ""
            return Site(code, kind, status, f"{where}:{call.lineno}", function.qualname, message, field_text)

        slots = self._reason_slots(call, callees)
        if error is not None and constructed and not slots:
            code = next((k.default_reason for k in self.ancestry(error) if k.default_reason), "")
            self.sites += [site(code)] if code else []
        for slot in slots:
            codes = (
                _literal_codes(slot)
                + _table_codes(slot, function.module)
                + self._constant(slot, function.module)
            )
            self.sites += [site(code) for code in codes]
            if codes:
                continue
            template = _template(slot, function.params)
            if isinstance(slot, ast.Name) and slot.id in function.params:
                template = (slot.id, "{}")
            # A code handed over at run time (a Lua script's answer, a function's) when no
            # template: the raise gives it its status; a stored reason makes it an outcome.
            param, pattern = template or ("", "")
            function.templates.append((param, pattern, status, call))

    def _constant(self, slot: ast.AST, module: Module) -> list[str]:
        """The code a module constant holds (``reason=BAD_IP``), here or where it is imported from."""
        if not isinstance(slot, ast.Name):
            return []
        if slot.id in module.constants:
            return [module.constants[slot.id]]
        home = self.modules.get(module.imports.get(slot.id, "").rsplit(".", 1)[0])
        return [home.constants[slot.id]] if home is not None and slot.id in home.constants else []

    # ---- Lua
    def _read_lua(self) -> None:
        prelude = (self.lua_dir / "_prelude.lua").read_text(encoding="utf-8")
        lua_params = _lua_params(prelude)
        for path in sorted(self.lua_dir.glob("*.lua")):
            text = path.read_text(encoding="utf-8")
            params = {**lua_params, **_lua_params(text)}
            sites: list[Site] = []
            for line_number, line in enumerate(text.splitlines(), 1):
                where = f"{_rel(path)}:{line_number}"
                sites += _lua_line_sites(line.split("--", 1)[0], params, where, f"lua:{path.stem}")
            self.lua_sites[path.stem] = sites
            self.lua_calls[path.stem] = set(re.findall(r"\b(\w+)\(", text)) & set(lua_params)
        self.lua_prelude_sites = _lua_function_sites(prelude, self.lua_sites.get("_prelude", []))
        for name, body in _lua_bodies(prelude).items():
            self.lua_calls[f"_prelude:{name}"] = set(re.findall(r"\b(\w+)\(", body)) & set(lua_params) - {
                name
            }

    def script_sites(self, script: str) -> list[Site]:
        """The sites of a script, with those of the prelude functions it calls (and they call)."""
        found = list(self.lua_sites.get(script, []))
        todo, seen = list(self.lua_calls.get(script, set())), set()
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            found += self.lua_prelude_sites.get(name, [])
            todo += list(self.lua_calls.get(f"_prelude:{name}", set()))
        return found


def _lua_line_sites(code: str, params: dict[str, list[str]], where: str, owner: str) -> list[Site]:
    """The codes of one line of Lua (its comment cut off)."""
    sites = [
        Site(m.group(1), AUDIT, "", where, owner) for m in re.finditer(r"\breason\s*=\s*'([A-Z0-9_]+)'", code)
    ]
    sites += [
        Site(m.group(1), OUTCOME, "", where, owner) for m in re.finditer(r"'reason',\s*'([A-Z0-9_]+)'", code)
    ]
    sites += [
        Site(m.group(1), OUTCOME, "", where, owner, handed=True)
        for m in re.finditer(r"return\s*\{'[A-Z_]+',\s*'([A-Z0-9_]+)'", code)
    ]
    sites += [
        Site(m.group(2), OUTCOME, "", where, owner)
        for m in re.finditer(r"return\s+'([A-Z_]+)',\s*'([A-Z0-9_]+)'", code)
        if m.group(1) in VERIFICATION_STATUSES
    ]
    sites += [
        Site(c, OUTCOME, "", where, owner, handed=True)
        for m in re.finditer(r"local\s+(\w*reason\w*)\s*=\s*\{([^}]*)\}", code, re.IGNORECASE)
        for c in re.findall(r"'([A-Z0-9_]+)'", m.group(2))
    ]
    for match in re.finditer(r"\b(\w+)\(((?:[^()]|\([^()]*\))*)\)", code):
        names = params.get(match.group(1), [])
        arguments = [a.strip() for a in re.split(r",(?![^()]*\))", match.group(2))]
        index = names.index("reason") if "reason" in names else len(arguments)
        literal = re.fullmatch(r"'([A-Z0-9_]+)'", arguments[index]) if index < len(arguments) else None
        sites += [Site(literal.group(1), OUTCOME, "", where, owner)] if literal else []
    return [s for s in sites if CODE_SHAPE.fullmatch(s.code)]


def _lua_params(text: str) -> dict[str, list[str]]:
    return {
        m.group(1): [p.strip() for p in m.group(2).split(",")]
        for m in re.finditer(r"function\s+(\w+)\(([^)]*)\)", text)
    }


def _lua_bodies(prelude: str) -> dict[str, str]:
    """The prelude's top-level functions, by name, with their text up to the next one."""
    starts = [(m.start(), m.group(1)) for m in re.finditer(r"^local function (\w+)\(", prelude, re.MULTILINE)]
    ends = [start for start, _ in starts[1:]] + [len(prelude)]
    return {name: prelude[start:end] for (start, name), end in zip(starts, ends, strict=True)}


def _lua_function_sites(prelude: str, sites: list[Site]) -> dict[str, list[Site]]:
    """The prelude's sites by the top-level function whose body holds them."""
    starts = [(m.start(), m.group(1)) for m in re.finditer(r"^local function (\w+)\(", prelude, re.MULTILINE)]
    lines = [prelude.count("\n", 0, start) + 1 for start, _ in starts]
    by_function: dict[str, list[Site]] = defaultdict(list)
    for site in sites:
        line = int(site.where.rsplit(":", 1)[1])
        owner = next(
            (
                name
                for (_, name), first in zip(reversed(starts), reversed(lines), strict=True)
                if first <= line
            ),
            "",
        )
        by_function[owner].append(site)
    return by_function


def _as_function(name: str, statement: ast.stmt) -> ast.FunctionDef:
    """A module-level assignment as a function of its own (a code table is read where it is named)."""
    arguments = ast.arguments(
        posonlyargs=[], args=[], vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[]
    )
    function = ast.FunctionDef(name=name, args=arguments, body=[statement], decorator_list=[], returns=None)
    return ast.copy_location(function, statement)


def _accepts(given: ast.arguments, wanted: ast.arguments) -> bool:
    """Whether a method with parameters ``given`` takes the calls one with ``wanted`` takes.

    As many positional parameters (a Verifier's check(context) is not a request's check()), and
    the protocol's keyword-only ones; more of those only with defaults (``mac(..., *,
    pepper_version=None)`` implements ``mac(...)``).
    """
    if len(given.posonlyargs) + len(given.args) != len(wanted.posonlyargs) + len(wanted.args):
        return False
    named = {a.arg for a in given.kwonlyargs}
    optional = {a.arg for a, d in zip(given.kwonlyargs, given.kw_defaults, strict=True) if d is not None}
    wanted_named = {a.arg for a in wanted.kwonlyargs}
    return (given.kwarg is not None or wanted_named <= named) and named - optional <= wanted_named


def _pairs(target: ast.expr, value: ast.expr) -> list[tuple[ast.Name, ast.expr]]:
    """The names an assignment binds, each with its value (``a, b = x, y`` pairwise)."""
    if isinstance(target, ast.Name):
        return [(target, value)]
    if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) and len(target.elts) == len(value.elts):
        return [pair for t, v in zip(target.elts, value.elts, strict=True) for pair in _pairs(t, v)]
    return []


def _returns_container(annotation: ast.AST | None) -> bool:
    """Whether a return annotation is a container (``_type_name`` names its elements, maybe ours)."""
    return isinstance(annotation, ast.Subscript) or (
        isinstance(annotation, ast.Constant) and "[" in str(annotation.value)
    )


def _assigned_type(value: ast.AST, annotations: dict[str, str]) -> str:
    """The class name a value assigned to an attribute has: an annotated parameter's, a call's."""
    if isinstance(value, ast.Name):
        return annotations.get(value.id, "")
    if isinstance(value, ast.Call):
        return _made_type(value)
    operands = (
        value.values
        if isinstance(value, ast.BoolOp)
        else [value.body, value.orelse]
        if isinstance(value, ast.IfExp)
        else []
    )
    return next((found for v in operands if (found := _assigned_type(v, annotations))), "")


def _made_type(call: ast.Call) -> str:
    """The class a call makes: its callee, or the type a ``cast(T, value)`` names."""
    if _type_name(call.func) == "cast" and call.args:
        return _type_name(call.args[0])
    return _type_name(call.func)


def _targets(node: ast.AST) -> list[ast.expr]:
    if isinstance(node, ast.Assign):
        return list(node.targets)
    if isinstance(node, ast.AnnAssign):
        return [node.target]
    return []


def _is_self_attr(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"


def _table_codes(node: ast.AST, module: Module) -> list[str]:
    """The codes of ``TABLE[key]`` where TABLE is a module-level table of codes."""
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        table = module.tables.get(node.value.id)
        return _literal_codes(table) if table is not None else []
    return []


def _is_code_table(module: Module) -> bool:
    """A vendor's code table (idverify/vendors/*codes*.py): its string values are reason codes."""
    return module.name.startswith("idverify.vendors.") and "codes" in module.name.rsplit(".", 1)[1]


def _names_reasons(name: str) -> bool:
    lowered = name.lower()
    return "reason" in lowered or lowered.endswith("refusal")


def _init_params(source: Source, klass: Klass) -> list[str]:
    for k in source.ancestry(klass):
        if "__init__" in k.methods:
            return k.methods["__init__"].params[1:]
    return next((k.fields for k in source.ancestry(klass) if k.fields), [])


@dataclass
class Entry:
    """A catalogue row."""

    code: str
    kinds: set[str] = field(default_factory=set)
    statuses: set[str] = field(default_factory=set)
    messages: list[str] = field(default_factory=list)
    fields: set[str] = field(default_factory=set)
    rpcs: set[str] = field(default_factory=set)
    sites: list[Site] = field(default_factory=list)
    origins: list[Site] = field(default_factory=list)  # where a code handed to a raise is written


def _rpc_roots(source: Source) -> dict[str, str]:
    """Servicer method -> ``Service/Method``, for every servicer in idverify.services."""
    roots: dict[str, str] = {}
    for function in source.functions.values():
        klass = function.cls
        if klass is None or not function.module.name.startswith("idverify.services."):
            continue
        base = next((b for b in klass.bases if b.endswith("Servicer")), "")
        if base and function.node.name[:1].isupper():
            roots[function.qualname] = f"{base.removesuffix('Servicer')}/{function.node.name}"
    return roots


def collect(source: Source | None = None) -> dict[str, Entry]:
    """Every code, its kinds, statuses, meanings, fields and RPCs."""
    source = source or Source()
    sites = list(source.sites)
    sites += _template_sites(source)
    sites += _claimed_sites(source)
    for script_sites in source.lua_sites.values():
        sites += script_sites
    # A handed code some raise or stored reason claimed arrives as they say, not on its own.
    raised = {site.code for site in sites if not site.handed}
    entries: dict[str, Entry] = {}
    for site in sites:
        entry = entries.setdefault(site.code, Entry(site.code))
        if site.handed and site.code in raised:
            entry.origins.append(site)  # the raise that sends it says how it arrives
            continue
        entry.kinds.add(site.kind)
        if site.status:
            entry.statuses.add(site.status)
        if site.message and site.message not in entry.messages:
            entry.messages.append(site.message)
        if site.field:
            entry.fields.add(site.field)
        entry.sites.append(site)
    _attach_rpcs(source, entries)
    return entries


def _template_sites(source: Source) -> list[Site]:
    """A reason that is a parameter (``reason=reason``, an f-string over one): what callers pass."""
    sites: list[Site] = []
    callers = source.callers
    _forward_templates(source)
    for function in source.functions.values():
        names = _call_names(function)
        for param, pattern, status, node in function.templates:
            if not param:
                continue
            for caller, call in callers.get(function.qualname, []):
                argument = _argument(call, names, param)
                message_node = _argument(call, names, "message")
                message = (
                    message_node.value
                    if isinstance(message_node, ast.Constant) and isinstance(message_node.value, str)
                    else _message(node)
                    if isinstance(node, ast.Call)
                    else ""
                )
                codes = _literal_codes(argument) + (_table_codes(argument, caller.module) if argument else [])
                for value in codes or _plain_literals(argument):
                    code = pattern.format(value.upper())
                    if CODE_SHAPE.fullmatch(code):
                        where = f"{_rel(caller.module.path)}:{call.lineno}"
                        kind = ERROR if status else OUTCOME
                        sites.append(Site(code, kind, status, where, caller.qualname, message))
    return sites


def _forward_templates(source: Source) -> None:
    """A caller that passes its own parameter on to a reason template has the template too.

    ``judge_counted(reply, purpose)`` hands ``purpose`` to ``refuse_at_limit``, whose reason is
    ``f"{purpose.upper()}_LIMIT_REACHED"``: the literal is at judge_counted's callers.
    """
    todo = [f for f in source.functions.values() if any(t[0] for t in f.templates)]
    while todo:
        function = todo.pop()
        names = _call_names(function)
        for param, pattern, status, node in list(function.templates):
            if not param:
                continue
            for caller, call in source.callers.get(function.qualname, []):
                argument = _argument(call, names, param)
                if not isinstance(argument, ast.Name) or argument.id not in caller.params:
                    continue
                forwarded = (argument.id, pattern, status, node)
                if forwarded not in caller.templates:
                    caller.templates.append(forwarded)
                    todo.append(caller)


def _call_names(function: Function) -> list[str]:
    """The parameters a call fills, in order: a method's without its self or cls."""
    bound = function.cls is not None and function.params[:1] in (["self"], ["cls"])
    return function.params[1:] if bound else function.params


def _argument(call: ast.Call, names: list[str], param: str) -> ast.expr | None:
    found = _keyword(call, param)
    if found is None and param in names and names.index(param) < len(call.args):
        found = call.args[names.index(param)]
    return found


def _claimed_sites(source: Source) -> list[Site]:
    """Codes handed to a raise at run time (a Lua answer, a function naming a refusal) take its status.

    A raise or a stored reason whose reason is neither a literal nor a parameter claims the handed
    codes of the Lua scripts its function runs and of the functions it reaches in two calls (a
    verdict a use case returns may reach its flow through the store's adapter, as a code send's
    does through ``store.code_sends.CodeSendChains``).
    """
    sites: list[Site] = []
    handed: dict[str, list[Site]] = defaultdict(list)
    for site in source.sites:
        if site.handed:
            handed[site.owner].append(site)
    for function in source.functions.values():
        for param, _pattern, status, node in function.templates:
            if param:
                continue
            found = [s for script in function.scripts for s in source.script_sites(script) if s.handed]
            near, ring = set(), {function.qualname}
            for _ in range(2):
                ring = {c for name in ring if (f := source.functions.get(name)) is not None for c in f.calls}
                near |= ring
            found += [s for name in near - {function.qualname} for s in handed.get(name, [])]
            if status:
                # A raise also claims what the scripts it reaches answer: a use case raises
                # what its store port's script refused with (flows.identity_check).
                found += [
                    s
                    for name in near - {function.qualname}
                    if (f := source.functions.get(name)) is not None
                    for script in f.scripts
                    for s in source.script_sites(script)
                    if s.handed
                ]
            where = f"{_rel(function.module.path)}:{getattr(node, 'lineno', 0)}"
            message = _message(node) if isinstance(node, ast.Call) and status else ""
            kind = ERROR if status else OUTCOME
            sites += [Site(s.code, kind, status, where, function.qualname, message) for s in found]
    return sites


def _plain_literals(node: ast.AST | None) -> list[str]:
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and re.fullmatch(r"[a-z][a-z0-9_]*", node.value)
    ):
        return [node.value]
    return []


def _reach(source: Source, roots: Iterable[str]) -> tuple[set[str], set[str]]:
    """The functions and Lua scripts reachable from ``roots``."""
    seen: set[str] = set()
    scripts: set[str] = set()
    todo = list(roots)
    constructors = {k.qualname: k for group in source.classes.values() for k in group}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        function = source.functions.get(name)
        if function is not None:
            todo.extend(function.calls)
            scripts |= function.scripts
        elif (klass := constructors.get(name)) is not None:
            for k in source.ancestry(klass):
                todo.extend(k.methods[m].qualname for m in ("__init__", "__post_init__") if m in k.methods)
    return seen, scripts


EVERY_RPC = "every RPC with a token"
COMMAND_LINE_ONLY = "`idverify` command line"


def _attach_rpcs(source: Source, entries: dict[str, Entry]) -> None:
    owners: dict[str, set[str]] = defaultdict(set)  # owner -> codes
    for entry in entries.values():
        for site in entry.sites:
            owners[site.owner].add(entry.code)

    def codes(roots: Iterable[str]) -> set[str]:
        functions, scripts = _reach(source, roots)
        found = {code for name in functions for code in owners.get(name, set())}
        for script in scripts:
            found |= {site.code for site in source.script_sites(script)}
            found |= owners.get(f"lua:{script}", set())
        return found & set(entries)

    interceptor = [f.qualname for f in source.functions.values() if f.module.name == INTERCEPTOR_MODULE]
    for code in codes(interceptor):
        entries[code].rpcs.add(EVERY_RPC)
    for root, rpc in _rpc_roots(source).items():
        for code in codes([root]):
            entries[code].rpcs.add(rpc)
    command_line = [
        f.qualname for f in source.functions.values() if f.module.name.startswith(COMMAND_PACKAGE)
    ]
    for code in codes(command_line):
        if not entries[code].rpcs:
            entries[code].rpcs.add(COMMAND_LINE_ONLY)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def vendor_meanings() -> dict[str, str]:
    """What docs/VENDORS.md's tables of step outcomes say each vendor reason means."""
    meanings: dict[str, str] = {}
    text = (ROOT / "docs" / "VENDORS.md").read_text(encoding="utf-8")
    for row in text.splitlines():
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] not in {"FAIL", "UNAVAILABLE"}:  # noqa: PLR2004 - outcome, reason, meaning
            continue
        for code in re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[1]):
            meanings.setdefault(code, f"{cells[2][:1].upper()}{cells[2][1:]} (a vendor step's {cells[0]}).")
    return meanings


def render(entries: dict[str, Entry]) -> str:
    """The Markdown catalogue."""
    vendors = vendor_meanings()
    lines = [
        "# Reason codes",
        "",
        "<!-- Generated by scripts/gen_reason_codes.py from the code; do not edit by hand. -->",
        "",
        "Every reason code idverify can send a caller, found in the code by",
        "`scripts/gen_reason_codes.py` (which says how) and checked by `tests/unit/test_reason_codes.py`.",
        "A code reaches a caller in one of three places:",
        "",
        "- **an error**: the `reason` of the `google.rpc.ErrorInfo` in the status details (domain",
        "  `idverify.dev`), with a `google.rpc.BadRequest` naming the field when there is one and a",
        "  `google.rpc.RetryInfo` when waiting helps (the protos are under `proto/google/rpc`);",
        "- **a verification's outcome** (`reason_code` below): `Verification.reason_code` of a",
        "  REJECTED, EXPIRED or waiting verification, and `StepOutcome.reason_code` of its steps;",
        "- **an audit entry**: `AuditEvent.reason_code` (QueryEvents).",
        "",
        "Codes are stable: a code keeps its meaning, and new ones may appear, so a caller treats an",
        "unknown code by its gRPC status. *RPCs* are those whose code path can return the code, as a",
        "call graph of the source finds them: it may name an RPC that in practice never meets a code,",
        "and a verifier plugin installed from outside this repository may return codes of its own.",
        "",
        "| Code | Returned as | Meaning | What the caller should do | RPCs |",
        "|---|---|---|---|---|",
    ]
    for code in sorted(entries):
        entry = entries[code]
        returned = [f"`{s}`" for s in sorted(entry.statuses)]
        if OUTCOME in entry.kinds:
            returned.append("`reason_code`")
        if AUDIT in entry.kinds:
            returned.append("audit entry")
        note_meaning, note_action = NOTES.get(code, ("", ""))
        meaning = (
            note_meaning or "; ".join(entry.messages[:3]) or vendors.get(code) or _default_meaning(entry)
        )
        if entry.fields:
            meaning += " (field " + ", ".join(f"`{f}`" for f in sorted(entry.fields)) + ")"
        if note_action:
            action = note_action
        elif entry.statuses:
            action = " ".join(ADVICE.get(s, "") for s in sorted(entry.statuses))
        elif OUTCOME in entry.kinds:
            action = ADVICE[OUTCOME]
        else:
            action = ADVICE[AUDIT]
        rpcs = ", ".join(sorted(entry.rpcs)) or "none: background work, seen in the audit log"
        lines.append(f"| `{code}` | {' '.join(returned)} | {_cell(meaning)} | {_cell(action)} | {rpcs} |")
    lines.append("")
    return "\n".join(lines)


def _default_meaning(entry: Entry) -> str:
    if entry.kinds == {AUDIT}:
        return "Why an audit entry was written (its `reason_code`)."
    places = ", ".join(sorted({s.where.split(":")[0] for s in entry.sites}))
    return f"A verification step's outcome, as {places} names it."


def stray_notes(entries: Mapping[str, object], notes: Mapping[str, object] = NOTES) -> list[str]:
    """Noted codes the source never gives: a typo, or a code since removed, whose note is lost."""
    return sorted(set(notes) - set(entries))


def main(argv: Iterable[str] | None = None) -> int:
    """Writes the catalogue, or with --check compares it; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="fail when docs/REASON_CODES.md is stale")
    options = parser.parse_args(list(argv) if argv is not None else None)
    entries = collect()
    stray = stray_notes(entries)
    if stray:
        print(f"{NOTES_FILE.name} notes codes the source never gives: {', '.join(stray)}", file=sys.stderr)
        return 1
    text = render(entries)
    if options.check:
        if not CATALOGUE.exists() or CATALOGUE.read_text(encoding="utf-8") != text:
            print("docs/REASON_CODES.md is stale; run scripts/gen_reason_codes.py", file=sys.stderr)
            return 1
        return 0
    CATALOGUE.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
