"""Command-line flags generated from a dataclass: one flag per field, its help the comment that ends
the field's line in the source (so a field is documented once, where it is defined)."""
from __future__ import annotations

import argparse
import ast
import inspect
import io
import textwrap
import tokenize
import typing
from dataclasses import MISSING, fields, is_dataclass
from typing import Any


def field_help(cls: type) -> dict[str, str]:
    """{field: the comment on the line where its definition ends} of a dataclass (no comment: absent)."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
    return {node.target.id: comments[node.end_lineno] for node in body
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.end_lineno in comments}


def _default(f: Any) -> Any:
    return f.default if f.default is not MISSING else (f.default_factory() if f.default_factory is not MISSING else None)


def add_dataclass_flags(parser: argparse.ArgumentParser | Any, cls: type, *, prefix: str = "",
                        dest: str = "", typed: bool = False, kebab: bool = False) -> None:
    """One `--<prefix><field>` flag per field of dataclass `cls`, help from field_help.

    Untyped (the config's way): every value a string the dataclass coerces later, default None
    (not given), nested dataclass fields as a group of `--<field>.<subfield>` flags. `typed`: values
    parsed as the field's type, booleans as switches, tuples as lists. `kebab` spells `_` as `-`.
    The parsed value lands in `<dest><prefix><field>`.
    """
    hints = typing.get_type_hints(cls)
    helps = field_help(cls)
    for f in fields(cls):
        hint, name = hints[f.name], f.name.replace("_", "-") if kebab else f.name
        flag, target = f"--{prefix}{name}", f"{dest}{prefix}{f.name}"
        text = helps.get(f.name, "")
        if is_dataclass(hint):
            group = parser.add_argument_group(f"{f.name} options ({hint.__name__})")
            add_dataclass_flags(group, hint, prefix=f"{prefix}{f.name}.", dest=dest, typed=typed, kebab=kebab)
        elif not typed:
            default = _default(f)
            shown = f" (default: {default})" if prefix else ""
            parser.add_argument(flag, dest=target, default=None, metavar="V", help=f"{text}{shown}")
        elif hint is bool:
            parser.add_argument(flag, dest=target, action="store_true", help=text)
        elif typing.get_origin(hint) is tuple:
            parser.add_argument(flag, dest=target, nargs="+", type=typing.get_args(hint)[0],
                                help=f"{text} (default {' '.join(map(str, _default(f)))})")
        else:
            kind = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
            parser.add_argument(flag, dest=target, type=kind, help=f"{text} (default {_default(f)})")


__all__ = ["field_help", "add_dataclass_flags"]
