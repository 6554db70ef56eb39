"""Flags generated from a dataclass: help from the comment ending each field, values parsed."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from cism_lib.flags import add_dataclass_flags, field_help


@dataclass(frozen=True)
class Inner:
    rate: float = 0.5        # a rate, # not a second comment
    tag: str = "a#b"


@dataclass(frozen=True)
class Outer:
    name: str = "x"          # what it is called
    sizes: tuple[int, ...] = field(
        default=(1, 2))      # sizes, given over two lines
    on: bool = False         # a switch
    limit: int | None = None  # at most this many
    inner: Inner = field(default_factory=Inner)


def test_help_is_the_comment_where_a_field_ends() -> None:
    assert field_help(Outer) == {"name": "what it is called", "sizes": "sizes, given over two lines",
                                 "on": "a switch", "limit": "at most this many"}
    assert field_help(Inner) == {"rate": "a rate, # not a second comment"}  # a '#' in a string is no comment


def test_untyped_flags_leave_values_to_the_config_and_nest_sections() -> None:
    p = argparse.ArgumentParser()
    add_dataclass_flags(p, Outer, dest="cfg:")
    args = vars(p.parse_args(["--inner.rate", "0.25", "--on", "true"]))
    assert args["cfg:inner.rate"] == "0.25" and args["cfg:on"] == "true" and args["cfg:name"] is None
    assert "(default: 0.5)" in p.format_help() and "inner options (Inner)" in p.format_help()


def test_typed_flags_parse_types_switches_and_lists() -> None:
    p = argparse.ArgumentParser(argument_default=argparse.SUPPRESS)
    add_dataclass_flags(p, Outer, typed=True, kebab=True)
    assert vars(p.parse_args([])) == {}
    args = vars(p.parse_args(["--sizes", "3", "4", "--on", "--limit", "7", "--inner.rate", "2"]))
    assert args == {"sizes": [3, 4], "on": True, "limit": 7, "inner.rate": 2.0}
