"""A small, safe expression language over a state (JSON data), for ``evt aggregate --find``.

``balance < 0``, ``status == "shipped" and total > 100``, ``len(items) >= 3``,
``items[0].quantity == 0``, ``owner.name != null``. Names are the state's keys;
``.field`` and ``[key]`` reach inside; comparisons, ``and``/``or``/``not``,
arithmetic (``+ - * / // %``), ``in``, ``x if c else y``, list literals and the
functions len, abs, min, max, sum and round. Nothing else: no other calls, no
attributes of Python objects, no imports — the expression is checked before it runs,
and evaluated by walking its syntax tree, never by ``eval``.
"""

from __future__ import annotations

import ast
import operator
from typing import Any

from ..errors import UsageError

FUNCTIONS = {"len": len, "abs": abs, "min": min, "max": max, "sum": sum, "round": round}
JSON_NAMES = {"true": True, "false": False, "null": None}

BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
UNARY = {ast.Not: operator.not_, ast.USub: operator.neg, ast.UAdd: operator.pos}
COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
ALLOWED = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.BinOp, ast.Compare, ast.Name, ast.Load,
    ast.Constant, ast.Attribute, ast.Subscript, ast.Slice, ast.List, ast.Tuple, ast.IfExp, ast.Call,
    *BINARY, *UNARY, *COMPARE,
)  # fmt: skip


# Limits that keep an expression's work proportional to its text and the state: the text's
# length and nesting, and what one operation may build.
MAX_LENGTH = 1000  # characters
MAX_DEPTH = 50  # nested operations
MAX_SIZE = 1_000_000  # characters of a string, items of a list
MAX_BITS = 10_000  # of an integer (about 3,000 digits)
MAX_ROUND_DIGITS = 100  # round(x, n): |n|


class InvalidExpression(UsageError):
    "An expression does not parse, or uses something the language does not allow"


class EvaluationProblem(Exception):
    "An expression cannot be evaluated on this state (a missing name, mismatched types)"


class Expression:
    "A checked expression; ``holds(state)`` evaluates it on one state."

    def __init__(self, text: str, option: str = "--find"):
        self.text = text
        if len(text) > MAX_LENGTH:
            raise InvalidExpression(f"{option}: the expression is {len(text)} characters long (at most {MAX_LENGTH})")
        try:
            self.tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as e:
            raise InvalidExpression(f"{option} {text!r}: not an expression ({e.msg})") from None
        except (ValueError, MemoryError, RecursionError) as e:  # the parser's own limits
            raise InvalidExpression(f"{option} {text!r}: not an expression ({type(e).__name__}: {e})") from None
        check_depth(self.tree, text, option)
        for node in ast.walk(self.tree):
            check_node(node, text, option)
        self.problem: str | None = None  # why the last evaluation failed, for error messages

    def evaluate(self, state: Any) -> Any:
        "The expression's value on ``state``; EvaluationProblem when it cannot be computed."
        try:
            return Evaluator(state).visit(self.tree.body)
        except EvaluationProblem:
            raise
        except (TypeError, ValueError, ZeroDivisionError, OverflowError, MemoryError, RecursionError) as e:
            raise EvaluationProblem(str(e) or type(e).__name__) from None

    def holds(self, state: Any) -> bool:
        """Whether the expression is true on ``state`` (False when it cannot be evaluated).

        ``problem`` says why the last evaluation failed (None when it did not).
        """
        try:
            value = self.evaluate(state)
        except EvaluationProblem as e:
            self.problem = str(e)
            return False
        self.problem = None
        return bool(value)


def check_depth(tree: ast.AST, text: str, option: str) -> None:
    "InvalidExpression if operations nest more than MAX_DEPTH deep (checked without recursion)."
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidExpression(f"{option} {text[:40]!r}…: nests more than {MAX_DEPTH} levels deep")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def check_node(node: ast.AST, text: str, option: str) -> None:
    if not isinstance(node, ALLOWED):
        raise InvalidExpression(f"{option} {text!r}: {type(node).__name__} is not allowed{HINT}")
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Mult)):
        if any(isinstance(side, ast.Constant) and isinstance(side.value, str) for side in (node.left, node.right)):
            raise InvalidExpression(f"{option} {text!r}: % and * work on numbers only (no string formatting or repetition){HINT}")
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords:
            raise InvalidExpression(f"{option} {text!r}: only len, abs, min, max, sum and round can be called{HINT}")
    if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
        raise InvalidExpression(f"{option} {text!r}: .{node.attr} is not allowed{HINT}")


HINT = " (use names from the state, .field, [index], comparisons, and/or/not, arithmetic)"


class Evaluator:
    "Walks a checked tree; names and fields are looked up in JSON data only."

    def __init__(self, state: Any):
        self.state = state

    def visit(self, node: ast.AST) -> Any:
        return getattr(self, "visit_" + type(node).__name__)(node)

    def visit_Constant(self, node: ast.Constant) -> Any:
        return node.value

    def visit_Name(self, node: ast.Name) -> Any:
        if isinstance(self.state, dict) and node.id in self.state:
            return self.state[node.id]
        if node.id in JSON_NAMES:
            return JSON_NAMES[node.id]
        raise EvaluationProblem(f"{node.id!r} is not in the state")

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        value = self.visit(node.value)
        if isinstance(value, dict) and node.attr in value:
            return value[node.attr]
        raise EvaluationProblem(f"{ast.unparse(node)!r} is not in the state")

    def visit_Subscript(self, node: ast.Subscript) -> Any:
        value = self.visit(node.value)
        if isinstance(node.slice, ast.Slice):
            parts = (node.slice.lower, node.slice.upper, node.slice.step)
            key: Any = slice(*(None if p is None else self.visit(p) for p in parts))
        else:
            key = self.visit(node.slice)
        if not isinstance(value, (dict, list, str)):
            raise EvaluationProblem(f"{ast.unparse(node.value)!r} cannot be indexed")
        try:
            return value[key]
        except (KeyError, IndexError):
            raise EvaluationProblem(f"{ast.unparse(node)!r} is not in the state") from None

    def visit_List(self, node: ast.List) -> Any:
        return [self.visit(e) for e in node.elts]

    visit_Tuple = visit_List

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        value = None
        for operand in node.values:
            value = self.visit(operand)
            if isinstance(node.op, ast.And) != bool(value):
                return value
        return value

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        return UNARY[type(node.op)](self.visit(node.operand))

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        left, right = self.visit(node.left), self.visit(node.right)
        if isinstance(node.op, (ast.Mult, ast.Mod)) and not (is_number(left) and is_number(right)):
            raise EvaluationProblem(f"{'*' if isinstance(node.op, ast.Mult) else '%'} works on numbers only")
        return bounded(BINARY[type(node.op)](left, right))

    def visit_Compare(self, node: ast.Compare) -> Any:
        left = self.visit(node.left)
        for op, comparator in zip(node.ops, node.comparators):
            right = self.visit(comparator)
            if not COMPARE[type(op)](left, right):
                return False
            left = right
        return True

    def visit_IfExp(self, node: ast.IfExp) -> Any:
        return self.visit(node.body) if self.visit(node.test) else self.visit(node.orelse)

    def visit_Call(self, node: ast.Call) -> Any:
        args = [self.visit(a) for a in node.args]
        if node.func.id == "round" and len(args) > 1:
            digits = args[1]
            if not isinstance(digits, int) or isinstance(digits, bool) or abs(digits) > MAX_ROUND_DIGITS:
                raise EvaluationProblem(f"round's digits must be a whole number from -{MAX_ROUND_DIGITS} to {MAX_ROUND_DIGITS}")
        return bounded(FUNCTIONS[node.func.id](*args))


def bounded(value: Any) -> Any:
    "A computed value, unless it is beyond what an expression may build (EvaluationProblem)."
    if isinstance(value, int) and value.bit_length() > MAX_BITS:
        raise EvaluationProblem(f"a number beyond {MAX_BITS} bits")
    if isinstance(value, (str, list)) and len(value) > MAX_SIZE:
        raise EvaluationProblem(f"a value longer than {MAX_SIZE:,}")
    return value


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
