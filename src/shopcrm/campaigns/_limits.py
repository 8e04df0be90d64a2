"""Templates within limits: a sandbox that meters the work a render does and refuses what would blow up.

A campaign template is written by a marketer and rendered once per customer inside a tick, so one
template must not hang the tick or exhaust its memory.  The environment here:

- counts *work units* while rendering (one per loop iteration, call, filter, output expression and
  intercepted operator, plus one per 64 characters or per item of every value produced or consumed)
  and stops a render past :attr:`TemplateLimits.max_work`.  The budget is a count, not a clock: the
  same template and customer pass or fail the same way at save time, in a preview and in a tick, on
  any machine, and the functional core reads no clock;
- refuses *before computing* an operation whose result would be too big: ``*`` and ``**`` on large
  numbers, string and list repetition, ``+`` and ``~`` building long strings, ``%``/``format`` widths,
  ``center``/``ljust``/``zfill``-style padding, ``replace`` and ``join`` blowing up, ranges longer
  than :attr:`TemplateLimits.max_range`;
- caps the size of every value produced and of the rendered text.

Going over a limit raises :class:`TemplateLimitError`; the renderer reports it as a ``CampaignError``.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any

import attrs
import jinja2
from jinja2 import nodes
from jinja2.runtime import LoopContext, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import _PassArg
from jinja2.visitor import NodeTransformer

__all__ = ["TemplateLimitError", "TemplateLimits", "LimitedEnvironment", "metered"]


@attrs.frozen(kw_only=True)
class TemplateLimits:
    """How much one template may do while rendering for one customer (see docs/campaigns/templates.md)."""

    #: characters of one template's source
    max_source_chars: int = 100_000
    #: characters one template renders to
    max_output_chars: int = 100_000
    #: characters of a string (or items of a list) any single operation may produce
    max_value_size: int = 100_000
    #: steps of ``range(...)``
    max_range: int = 10_000
    #: bits of an integer that ``*`` or ``**`` may produce (4,096 bits: about 1,200 digits)
    max_int_bits: int = 4_096
    #: work units of one render (about a microsecond each on a current machine; see the module docstring)
    max_work: int = 100_000


class TemplateLimitError(Exception):
    """A template went over one of its :class:`TemplateLimits`."""


_CHARS_PER_UNIT = 64
#: a call (a macro, a recursive loop, a method) runs much more Python than a loop step
_CALL_UNITS = 5
_LOOP = "_shopcrm_each"
_CONCAT = "_shopcrm_concat"
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[a-zA-Z%]")


class _Meter:
    """The work budget of one render."""

    __slots__ = ("left", "limits")

    def __init__(self, limits: TemplateLimits) -> None:
        self.limits = limits
        self.left = limits.max_work

    def spend(self, units: int) -> None:
        self.left -= units
        if self.left < 0:
            raise TemplateLimitError(
                f"the template does more than {self.limits.max_work:,} units of work for one customer (a loop too "
                "long or nested too deep, or recursion); keep loops short"
            )

    def produced(self, value: Any) -> None:
        """Charge and check a value an operation produced."""
        if isinstance(value, str | bytes | bytearray | list | tuple | dict | set | frozenset):
            self.size(len(value), "a value")
            self.spend(_cost(value))

    def size(self, size: int, what: str) -> None:
        if size > self.limits.max_value_size:
            raise TemplateLimitError(
                f"{what} of {size:,} characters or items; a template value holds at most {self.limits.max_value_size:,}"
            )


def _cost(value: Any) -> int:
    if isinstance(value, str | bytes | bytearray):
        return 1 + len(value) // _CHARS_PER_UNIT
    if isinstance(value, list | tuple | dict | set | frozenset):
        return 1 + len(value)
    return 1


_METER: ContextVar[_Meter | None] = ContextVar("shopcrm_template_meter", default=None)


def metered(limits: TemplateLimits, parts: Iterable[str]) -> str:
    """Render ``parts`` (a template's ``generate()``) under a fresh work budget, capping the output's size."""
    meter = _Meter(limits)
    token = _METER.set(meter)
    try:
        out: list[str] = []
        size = 0
        for part in parts:
            size += len(part)
            if size > limits.max_output_chars:
                raise TemplateLimitError(f"the template renders more than {limits.max_output_chars:,} characters")
            meter.spend(1)
            out.append(part)
        return "".join(out)
    finally:
        _METER.reset(token)


def _width(value: Any, limits: TemplateLimits, what: str) -> None:
    if isinstance(value, int) and value > limits.max_value_size:
        raise TemplateLimitError(f"{what} {value:,} is wider than a template value may be ({limits.max_value_size:,})")


def _check_percent(form: Any, limits: TemplateLimits) -> None:
    """``form % args`` (and the ``format`` filter): no ``*`` widths, no width or precision beyond the value cap."""
    for width, precision in _PERCENT_SPEC.findall(str(form)):
        for number in (width, precision):
            if number == "*":
                raise TemplateLimitError("'*' widths in %-formatting are not supported in templates; write the width")
            if number:
                _width(int(number), limits, "a %-format width")


def _check_format(form: str, limits: TemplateLimits) -> None:
    """``str.format``: no nested fields in a format spec, no width beyond the value cap."""
    for _, _, spec, _ in string.Formatter().parse(form):
        if not spec:
            continue
        if "{" in spec:
            raise TemplateLimitError("nested fields in a format spec are not supported in templates; write the width")
        for number in re.findall(r"\d+", spec):
            _width(int(number), limits, "a format width")


def _check_text_method(owner: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], meter: _Meter) -> tuple[Any, ...]:
    """Refuse a str/bytes method call whose result would be too big; returns the (possibly materialised) args."""
    limits = meter.limits
    meter.spend(_cost(owner))
    if name in ("ljust", "rjust", "center", "zfill"):
        _width(args[0] if args else kwargs.get("width"), limits, f"{name}() width")
    elif name == "expandtabs":
        tab = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(tab, int):
            meter.size(len(owner) + owner.count("\t" if isinstance(owner, str) else b"\t") * max(tab, 0), "expandtabs() would make a string")
    elif name == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        if isinstance(old, str | bytes) and isinstance(new, str | bytes):
            count = args[2] if len(args) > 2 else kwargs.get("count", -1)
            hits = len(owner) + 1 if not old else owner.count(old)
            if isinstance(count, int) and count >= 0:
                hits = min(hits, count)
            meter.size(len(owner) + hits * max(len(new) - len(old), 0), "replace() would make a string")
    elif name == "join" and args:
        items = list(args[0])
        meter.size(len(items), "join() of a list")
        meter.size(sum(len(x) for x in items if isinstance(x, str | bytes)) + len(owner) * max(len(items) - 1, 0),
                   "join() would make a string")
        args = (items, *args[1:])
    elif name in ("format", "format_map") and isinstance(owner, str):
        _check_format(owner, limits)
    return args


def _check_binop(operator: str, left: Any, right: Any, meter: _Meter) -> None:
    limits = meter.limits
    meter.spend(1)
    if operator == "**":
        if isinstance(left, int) and isinstance(right, int):
            if right > 0 and abs(left) > 1 and (
                right > limits.max_int_bits or (abs(left).bit_length() - 1) * right > limits.max_int_bits
            ):
                raise TemplateLimitError(
                    f"{left} ** {right} would have more than {limits.max_int_bits:,} bits; templates keep numbers smaller"
                )
        elif isinstance(right, int) and abs(right) > limits.max_int_bits:  # a Decimal or float base
            raise TemplateLimitError(f"an exponent of {right:,} is too large for a template (at most {limits.max_int_bits:,})")
    elif operator == "*":
        if isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > limits.max_int_bits:
                raise TemplateLimitError(f"a product of more than {limits.max_int_bits:,} bits; templates keep numbers smaller")
            return
        sized, times = (left, right) if isinstance(right, int) else (right, left)
        if isinstance(times, int) and isinstance(sized, str | bytes | list | tuple):
            meter.size(len(sized) * max(times, 0), "repetition would make a value")
    elif operator == "+":
        if isinstance(left, str | bytes | list | tuple) and isinstance(right, str | bytes | list | tuple):
            meter.size(len(left) + len(right), "'+' would make a value")
    elif operator == "%" and isinstance(left, str):
        _check_percent(left, limits)


def _capped_range(limits: TemplateLimits) -> Callable[..., range]:
    def capped(*args: int) -> range:
        steps = range(*args)
        if len(steps) > limits.max_range:
            raise TemplateLimitError(f"range{args} has {len(steps):,} steps; templates loop at most {limits.max_range:,} times")
        return steps

    return capped


class _MeterLoops(NodeTransformer):
    """Every ``for`` loop's iterable counted item by item; every ``~`` concatenation size-checked."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _LOOP, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(nodes.List(node.nodes, lineno=node.lineno), _CONCAT, [], [], None, None, lineno=node.lineno)


@jinja2.pass_context
def _each(context: Any, iterable: Any) -> Iterator[Any]:
    meter = _METER.get()
    for item in iterable:
        if meter is not None:
            meter.spend(1)
        yield item


@jinja2.pass_context
def _concat(context: Any, items: list[Any]) -> str:
    meter = _METER.get()
    if meter is not None:
        meter.size(sum(len(x) if isinstance(x, str) else len(str(x)) for x in items), "'~' would make a string")
    return markup_join(items) if context.eval_ctx.autoescape else str_join(items)


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that checks its arguments' sizes before it runs and charges and checks what it returns.

    It takes the render context, which also keeps jinja2 from running it at compile time on constant
    arguments (outside any budget)."""
    passes = getattr(func, "jinja_pass_arg", None)

    @functools.wraps(func)
    def guarded(context: Any, *args: Any, **kwargs: Any) -> Any:
        meter = _METER.get()
        if meter is not None:
            args = _check_filter(name, args, kwargs, meter)
        if passes is _PassArg.context:
            result = func(context, *args, **kwargs)
        elif passes is _PassArg.eval_context:
            result = func(context.eval_ctx, *args, **kwargs)
        elif passes is _PassArg.environment:
            result = func(context.environment, *args, **kwargs)
        else:
            result = func(*args, **kwargs)
        if meter is not None:
            meter.produced(result)
        return result

    guarded.jinja_pass_arg = _PassArg.context  # type: ignore[attr-defined]
    return guarded


def _check_filter(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], meter: _Meter) -> tuple[Any, ...]:
    """Refuse a filter call whose result would be too big; returns the (possibly materialised) arguments."""
    value, rest = (args[0], args[1:]) if args else (None, ())
    limits = meter.limits
    meter.spend(_cost(value))
    first = rest[0] if rest else None
    if name == "center":
        _width(kwargs.get("width", first), limits, "center width")
    elif name in ("batch", "slice"):
        _width(kwargs.get("linecount", kwargs.get("slices", first)), limits, f"{name} count")
    elif name == "indent":
        width = kwargs.get("width", first if first is not None else 4)
        lines = str(value).count("\n") + 1
        pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        meter.size(len(str(value)) + lines * max(pad, 0), "indent would make a string")
    elif name == "format":
        _check_percent(value, limits)
    elif name == "replace" and len(rest) >= 2 and isinstance(value, str):
        _check_text_method(value, "replace", tuple(str(x) for x in rest[:2]) + tuple(rest[2:]), {}, meter)
    elif name == "join" and value is not None:
        items = list(value)
        meter.size(len(items), "join of a list")
        joiner = kwargs.get("d", first if first is not None else "")
        meter.size(sum(len(str(x)) for x in items) + len(str(joiner)) * max(len(items) - 1, 0), "join would make a string")
        args = (items, *rest)
    return args


class LimitedEnvironment(ImmutableSandboxedEnvironment):
    """jinja2's immutable sandbox (no ``list.append``, no private attributes) under :class:`TemplateLimits`."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, limits: TemplateLimits, **options: Any) -> None:
        super().__init__(finalize=_finalize, **options)
        self.limits = limits
        self.globals["range"] = _capped_range(limits)
        self.globals.pop("lipsum", None)  # lorem ipsum of any length: no use in a message

    def guard_filters(self) -> None:
        """Wrap every registered filter (call once the filters are registered)."""
        for name, func in list(self.filters.items()):
            self.filters[name] = _guard_filter(name, func)
        self.filters[_LOOP] = _each
        self.filters[_CONCAT] = _concat

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        result = _MeterLoops().visit(tree)
        assert isinstance(result, nodes.Template)
        return result

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        meter = _METER.get()
        if meter is not None:
            _check_binop(operator, left, right, meter)
        result = super().call_binop(context, operator, left, right)
        if meter is not None:
            meter.produced(result)
        return result

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        meter = _METER.get()
        if meter is None:
            return super().call(__context, __obj, *args, **kwargs)
        meter.spend(_CALL_UNITS)
        target = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
        owner = getattr(target, "__self__", None)
        if isinstance(owner, str | bytes | bytearray):
            args = _check_text_method(owner, getattr(target, "__name__", ""), args, kwargs, meter)
        elif isinstance(owner, int) and getattr(target, "__name__", "") == "to_bytes":
            _width(args[0] if args else kwargs.get("length", 1), meter.limits, "to_bytes length")
        elif isinstance(__obj, LoopContext) and args:  # a recursive loop's next level
            args = (_each(__context, args[0]), *args[1:])
        result = super().call(__context, __obj, *args, **kwargs)
        meter.produced(result)
        return result


def _finalize(value: Any) -> Any:
    meter = _METER.get()
    if meter is not None:
        meter.produced(value)
    return value
