"""Print the figures of the package's layout: lines per module, code lines per function.

A function's code lines are its lines that are neither blank, nor comment-only, nor part of
its docstring. ``tests/test_layout.py`` asserts the limits printed here.

Usage: python scripts/code_figures.py [--top N]
"""

from __future__ import annotations

import argparse
import ast
import io
import tokenize
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "mlemap"
#: The limits the layout test asserts.
MAX_FUNCTION_CODE_LINES = 80
MAX_MODULE_LINES = 500


class Function(NamedTuple):
    module: str
    name: str
    code_lines: int


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def module_lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def functions(path: Path) -> list[Function]:
    """Every function and method of a module with its number of code lines."""
    source = path.read_text()
    tree = ast.parse(source)
    code = _code_line_numbers(source)
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        lines = set(range(node.lineno, node.end_lineno + 1)) & code
        docstring = _docstring_lines(node)
        out.append(Function(str(path.relative_to(PACKAGE.parent)), node.name,
                            len(lines - docstring)))
    return out


def _code_line_numbers(source: str) -> set[int]:
    """Lines holding a token other than a comment or a line break."""
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENCODING, tokenize.ENDMARKER}
    lines = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in skip:
            lines.update(range(token.start[0], token.end[0] + 1))
    return lines


def _docstring_lines(node) -> set[int]:
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        return set(range(body[0].lineno, body[0].end_lineno + 1))
    return set()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=10, help="longest functions to list")
    args = parser.parse_args(argv)
    print(f"modules (limit ~{MAX_MODULE_LINES} lines):")
    for path in modules():
        print(f"  {module_lines(path):5d}  {path.relative_to(PACKAGE.parent)}")
    every = [f for path in modules() for f in functions(path)]
    every.sort(key=lambda f: -f.code_lines)
    print(f"longest functions (limit {MAX_FUNCTION_CODE_LINES} code lines):")
    for f in every[: args.top]:
        print(f"  {f.code_lines:5d}  {f.module}:{f.name}")


if __name__ == "__main__":
    main()
