"""The contract between the code and the schema folder: who reads and who writes each event.

``choreo schemas check`` compares the versions of an event type with each other under a
policy. That leaves two gaps this module closes:

- A consumer reads with the one version its ``EventCodec`` picks (the latest, or an older
  one pinned in ``reader_versions``), and it meets every version ever written, because
  events outlive producer releases in their topic. :func:`check_consumers` runs the avro
  checker on exactly those pairs and names the consumer in each finding, whatever the
  policy file says.
- A schema nobody emits is dead weight that still constrains every future change, and an
  emitted type without a schema fails at run time. :func:`scan_emits` finds the event
  types the services emit by reading their source, so the check needs neither a database
  nor a broker.

The inputs are plain data (consumer names, event types, versions, a source folder), so
the module depends on neither the services nor the outbox runtime; whoever wires the
services in (a test, the CLI) supplies them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from choreo.schemas.compatibility import ReadFailure, read_failure
from choreo.schemas.parsing import ParsedSchema, ParsedTree

EVENT_TYPE = "event_type"
EMITTERS = (("emit", 1), ("writing", 0))
"""The writer's methods and the position of their event type:
``OutboxWriter.emit(conn, event_type, aggregate_id, payload)`` and
``OutboxWriter.writing(event_type, aggregate_id, payload)``."""
DECLARATIONS = ("Transition",)
"""Values that carry an event to emit later (``Transition(status, event_type, ...)``,
the type in the same place as ``emit``'s): each construction is an emit site, and an
``emit`` whose type is some value's ``.event_type`` counts as declared by them."""


@dataclass(frozen=True)
class Subscription:
    """One consumer handling one event type, and the schema version it reads it with."""

    consumer: str
    event_type: str
    reader_version: int | None = None
    """None: the latest version, which an ``EventCodec`` without a pin reads with."""


@dataclass(frozen=True)
class ContractBreak:
    """Data one writer version produced that a consumer's reader schema cannot read."""

    consumer: str
    event_type: str
    reader_version: int
    writer_version: int
    failure: ReadFailure

    def __str__(self) -> str:
        return (f"consumer {self.consumer} reads {self.event_type} with v{self.reader_version}, "
                f"which cannot read data written with v{self.writer_version}: {self.failure}")


@dataclass(frozen=True)
class ConsumerContracts:
    pairs: int
    """Reader/writer pairs checked: a vacuous check (no subscriptions) shows up as 0."""
    breaks: tuple[ContractBreak, ...]
    problems: tuple[str, ...]
    """Subscriptions that cannot be checked: no schema, or a pin to a version with no file."""


def check_consumers(tree: ParsedTree, subscriptions: Iterable[Subscription]) -> ConsumerContracts:
    """Each subscription's reader schema against every version of its type, as writer."""
    by_type: dict[str, dict[int, ParsedSchema]] = {}
    for schema in tree.schemas:
        by_type.setdefault(schema.event.event_type, {})[schema.event.version] = schema
    pairs = 0
    breaks: list[ContractBreak] = []
    problems: list[str] = []
    for subscription in subscriptions:
        consumer, event_type = subscription.consumer, subscription.event_type
        versions = by_type.get(event_type)
        if not versions:
            problems.append(f"consumer {consumer} handles {event_type}, which has no schema")
            continue
        reader_version = subscription.reader_version
        if reader_version is None:
            reader_version = max(versions)
        reader = versions.get(reader_version)
        if reader is None:
            problems.append(f"consumer {consumer} reads {event_type} with v{reader_version}, "
                            f"which has no schema file")
            continue
        for writer_version, writer in sorted(versions.items()):
            pairs += 1
            failure = read_failure(reader, writer)
            if failure is not None:
                breaks.append(ContractBreak(consumer, event_type, reader_version,
                                            writer_version, failure))
    return ConsumerContracts(pairs, tuple(breaks), tuple(problems))


@dataclass(frozen=True)
class EmitSite:
    """Where an event type that reaches ``OutboxWriter.emit`` is written down in the source."""

    service: str
    """The package under the scanned folder: ``orders`` for ``services/orders/api.py``."""
    file: str
    line: int
    event_type: str | None
    """None: the analysis could not tell which event type the call emits."""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class EmitScan:
    sites: tuple[EmitSite, ...]

    @property
    def produced(self) -> dict[str, list[EmitSite]]:
        found: dict[str, list[EmitSite]] = {}
        for site in self.sites:
            if site.event_type is not None:
                found.setdefault(site.event_type, []).append(site)
        return found

    @property
    def unresolved(self) -> list[EmitSite]:
        return [site for site in self.sites if site.event_type is None]


def producer_problems(tree: ParsedTree, scan: EmitScan) -> list[str]:
    """Schemas nobody emits, emits without a schema, and emits the scan cannot follow."""
    with_schema = {schema.event.event_type for schema in tree.schemas}
    produced = scan.produced
    return [
        *(f"{event_type} has a schema, but no service emits it"
          for event_type in sorted(with_schema - set(produced))),
        *(f"{site}: {site.service} emits {event_type}, which has no schema"
          for event_type in sorted(set(produced) - with_schema) for site in produced[event_type]),
        *(f"{site}: cannot tell which event type {site.service} emits here; pass the type as a "
          f"string literal, or through parameters and local names bound to literals"
          for site in scan.unresolved),
    ]


def scan_emits(services_root: Path) -> EmitScan:
    """Follow the event type argument of every ``emit``/``writing`` back to its literals.

    Static, so it needs no database, and it sees emits a sample run would miss (sweepers,
    rare branches). It follows what the services actually do, and fails closed: an
    argument it cannot follow becomes an unresolved site, never a silent pass.

    - a string literal is the event type;
    - a parameter makes its function an emitter too, and the calls of that function (by
      name, anywhere under the root) are followed in turn (``finish(..., "OrderCancelled")``);
    - a value's ``.event_type`` was declared where the value was built: the constructions
      of ``DECLARATIONS`` are followed like emits;
    - a local name is followed to its assignments, and a name unpacked from a call's
      returned tuple to that position of the tuples the callee returns. When the callee is
      itself a parameter (a strategy passed in), every function of the module returning a
      tuple of that length counts as a possible callee.
    """
    modules = [_Module.parse(path, services_root) for path in sorted(services_root.rglob("*.py"))]
    pending = [*(_Target(name, position, EVENT_TYPE) for name, position in EMITTERS),
               *(_Target(name, 1, EVENT_TYPE) for name in DECLARATIONS)]
    seen: set[_Target] = set()
    sites: list[EmitSite] = []
    while pending:
        target = pending.pop()
        if target in seen:
            continue
        seen.add(target)
        for module in modules:
            for call in module.calls_of(target.name):
                argument = target.argument_of(call)
                if argument is None:
                    sites.append(module.site(call, None))
                    continue
                resolution = module.resolve(argument, module.functions_around(call))
                sites.extend(resolution.sites)
                pending.extend(resolution.targets)
    return EmitScan(tuple(sorted(set(sites), key=lambda s: (s.file, s.line, s.event_type or ""))))


@dataclass(frozen=True)
class _Target:
    """A callable whose argument at ``position`` (or ``keyword``) is an event type to emit."""

    name: str
    position: int | None
    keyword: str

    def argument_of(self, call: ast.Call) -> ast.expr | None:
        if self.position is not None and self.position < len(call.args):
            before = call.args[:self.position + 1]
            return None if any(isinstance(a, ast.Starred) for a in before) \
                else call.args[self.position]
        return next((k.value for k in call.keywords if k.arg == self.keyword), None)


@dataclass
class _Resolution:
    sites: list[EmitSite] = field(default_factory=list)
    targets: list[_Target] = field(default_factory=list)

    def add(self, other: _Resolution) -> None:
        self.sites.extend(other.sites)
        self.targets.extend(other.targets)


Function = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass
class _Module:
    tree: ast.Module
    file: str
    service: str
    parents: dict[ast.AST, ast.AST]

    @classmethod
    def parse(cls, path: Path, root: Path) -> _Module:
        tree = ast.parse(path.read_text(), filename=str(path))
        relative = path.relative_to(root)
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        service = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        return cls(tree, f"{root.name}/{relative.as_posix()}", service, parents)

    def site(self, node: ast.AST, event_type: str | None) -> EmitSite:
        return EmitSite(self.service, self.file, getattr(node, "lineno", 0), event_type)

    def calls_of(self, name: str) -> Iterator[ast.Call]:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call) and _called_name(node.func) == name:
                yield node

    def functions_around(self, node: ast.AST) -> list[Function]:
        """The functions enclosing ``node``, innermost first."""
        chain: list[Function] = []
        while node in self.parents:
            node = self.parents[node]
            if isinstance(node, Function):
                chain.append(node)
        return chain

    def resolve(self, expr: ast.expr, scopes: list[Function]) -> _Resolution:
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return _Resolution(sites=[self.site(expr, expr.value)])
        if isinstance(expr, ast.IfExp):
            resolution = self.resolve(expr.body, scopes)
            resolution.add(self.resolve(expr.orelse, scopes))
            return resolution
        if isinstance(expr, ast.Name):
            return self._resolve_name(expr, scopes)
        if isinstance(expr, ast.Attribute) and expr.attr == EVENT_TYPE:
            return _Resolution()  # declared where its value was built (DECLARATIONS)
        return _Resolution(sites=[self.site(expr, None)])

    def _resolve_name(self, name: ast.Name, scopes: list[Function]) -> _Resolution:
        for depth, scope in enumerate(scopes):
            target = _parameter_target(scope, name.id, self.parents.get(scope))
            if target is not None:
                return _Resolution(targets=[target])
            bindings = list(_bindings(scope.body, name.id))
            if bindings:
                return self._resolve_bindings(bindings, name, scopes[depth:])
        bindings = list(_bindings(self.tree.body, name.id))
        if bindings:
            return self._resolve_bindings(bindings, name, [])
        return _Resolution(sites=[self.site(name, None)])

    def _resolve_bindings(self, bindings: list[tuple[ast.expr, int | None, int]],
                          name: ast.Name, scopes: list[Function]) -> _Resolution:
        resolution = _Resolution()
        for value, index, arity in bindings:
            if index is None:
                resolution.add(self.resolve(value, scopes))
            elif isinstance(value, ast.Tuple | ast.List):
                resolution.add(self.resolve(value.elts[index], scopes))
            elif isinstance(value, ast.Call):
                resolution.add(self._resolve_returned(value, index, arity, name, scopes))
            else:
                resolution.sites.append(self.site(name, None))
        return resolution

    def _resolve_returned(self, call: ast.Call, index: int, arity: int, name: ast.Name,
                          scopes: list[Function]) -> _Resolution:
        """Position ``index`` of the ``arity``-tuples the function called by ``call`` returns."""
        callee = _called_name(call.func)
        functions = [node for node in ast.walk(self.tree) if isinstance(node, Function)]
        if not any(_is_parameter(scope, callee) for scope in scopes):
            functions = [function for function in functions if function.name == callee]
        resolution = _Resolution()
        for function in functions:
            for returned in _returns(function.body):
                if isinstance(returned, ast.Tuple) and len(returned.elts) == arity:
                    element = returned.elts[index]
                    resolution.add(self.resolve(element, self.functions_around(element)))
        if not resolution.sites and not resolution.targets:
            resolution.sites.append(self.site(name, None))
        return resolution


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _is_parameter(function: Function, name: str | None) -> bool:
    arguments = function.args
    return any(a.arg == name for a in (*arguments.posonlyargs, *arguments.args,
                                       *arguments.kwonlyargs))


def _parameter_target(function: Function, name: str, parent: ast.AST | None) -> _Target | None:
    """The function as a new target if ``name`` is one of its parameters."""
    arguments = function.args
    positional = [a.arg for a in (*arguments.posonlyargs, *arguments.args)]
    if isinstance(parent, ast.ClassDef) and positional[:1] in (["self"], ["cls"]):
        positional = positional[1:]  # called as obj.method(...): the instance is not an argument
    if name in positional:
        return _Target(function.name, positional.index(name), name)
    if any(a.arg == name for a in arguments.kwonlyargs):
        return _Target(function.name, None, name)
    return None


def _own_nodes(body: list[ast.stmt]) -> Iterator[ast.AST]:
    """Every node of a body except those inside nested functions, classes and lambdas."""
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        yield node
        stack.extend(child for child in ast.iter_child_nodes(node)
                     if not isinstance(child, Function | ast.ClassDef | ast.Lambda))


def _bindings(body: list[ast.stmt], name: str) -> Iterator[tuple[ast.expr, int | None, int]]:
    """(value, position in an unpacked tuple or None, tuple length) of each ``name = ...``."""
    for node in _own_nodes(body):
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Name) and target.id == name:
                yield value, None, 0
            elif isinstance(target, ast.Tuple | ast.List):
                for index, element in enumerate(target.elts):
                    if isinstance(element, ast.Name) and element.id == name:
                        yield value, index, len(target.elts)


def _returns(body: list[ast.stmt]) -> Iterator[ast.expr]:
    for node in _own_nodes(body):
        if isinstance(node, ast.Return) and node.value is not None:
            yield node.value
