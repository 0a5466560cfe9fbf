"""`contactgraph`: one module per subcommand; this one assembles the parser.

Every long flag of every subcommand can also come from the environment:
``--data-dir`` from ``CONTACTGRAPH_DATA_DIR``, ``--no-wal`` from
``CONTACTGRAPH_NO_WAL`` (1/true/yes/on or 0/false/no/off). A flag on the
command line wins over the variable, which wins over the built-in default.
This is done once, here, over the finished parser, so a new flag gets its
variable without any code of its own."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Iterator, Mapping
from importlib import metadata

from service.cli import demo, evaluate, policy, probe_command, rebuild, serve, snapshot, wal

ENV_PREFIX = "CONTACTGRAPH_"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
# Actions with no value to take from the environment.
_NO_ENV = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction, argparse._CountAction,
           argparse._AppendConstAction)
# Set on an action whose default came from the environment: the variable's name.
_FROM_ENV = "contactgraph_env_variable"


def version() -> str:
    """The installed distribution's version (importlib.metadata)."""
    try:
        return metadata.version("contactgraph")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The whole command line; defaults from ``environ`` (os.environ if None)."""
    parser = argparse.ArgumentParser(prog="contactgraph", description="Contact suggestions, safe for teenagers.",
                                     epilog=f"Every --flag can also be set as {ENV_PREFIX}FLAG (upper case, "
                                            f"- as _), e.g. {ENV_PREFIX}DATA_DIR; a flag given wins.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (serve, policy, rebuild, wal, demo, evaluate, snapshot, probe_command):
        command.add_parser(sub)
    apply_environment(parser, os.environ if environ is None else environ)
    return parser


def env_name(option: str) -> str:
    """``--data-dir`` -> ``CONTACTGRAPH_DATA_DIR``."""
    return ENV_PREFIX + option.lstrip("-").replace("-", "_").upper()


class EnvValueError:
    """A variable that does not convert: kept as the option's default and
    reported only if the chosen command reads that option."""

    def __init__(self, variable: str, value: str, why: str) -> None:
        self.message = f"{variable}={value!r}: {why}"

    def __repr__(self) -> str:
        return self.message


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    seen: set[int] = set()
    todo = [parser]
    while todo:
        p = todo.pop()
        if id(p) in seen:
            continue
        seen.add(id(p))
        yield p
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())


def _convert(action: argparse.Action, text: str) -> object:
    """``text`` as the value the flag would give, or raise ValueError."""
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse.BooleanOptionalAction)):
        word = text.strip().lower()
        if word not in _TRUE | _FALSE:
            raise ValueError("expected 1/true/yes/on or 0/false/no/off")
        on = word in _TRUE
        return (not on) if isinstance(action, argparse._StoreFalseAction) else on
    if isinstance(action, argparse._StoreConstAction):
        return action.const if _convert_bool(text) else action.default

    def one(item: str) -> object:
        try:
            value = action.type(item) if callable(action.type) else item
        except (TypeError, ValueError, argparse.ArgumentTypeError) as err:
            raise ValueError(str(err) or f"invalid value {item!r}") from None
        if action.choices is not None and value not in action.choices:
            raise ValueError(f"choose from {', '.join(map(repr, action.choices))}")
        return value

    many = isinstance(action, argparse._AppendAction) or action.nargs in ("+", "*") or isinstance(action.nargs, int)
    if many:
        items = [one(item) for item in shlex.split(text)]
        if action.nargs == "+" and not items:
            raise ValueError("expected at least one value")
        return items
    return one(text)


def _convert_bool(text: str) -> bool:
    word = text.strip().lower()
    if word not in _TRUE | _FALSE:
        raise ValueError("expected 1/true/yes/on or 0/false/no/off")
    return word in _TRUE


def apply_environment(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """Make each ``CONTACTGRAPH_<FLAG>`` in ``environ`` the default of every
    long option ``--flag`` of every (sub)parser, and name the variable in
    the option's help."""
    for p in _parsers(parser):
        for action in p._actions:
            longs = [o for o in action.option_strings if o.startswith("--")]
            if not longs or isinstance(action, _NO_ENV):
                continue
            variable = env_name(longs[0])
            if action.help is not None and action.help != argparse.SUPPRESS and variable not in action.help:
                action.help = f"{action.help} [env {variable}]"
            elif action.help is None:
                action.help = f"[env {variable}]"
            if variable not in environ:
                continue
            text = environ[variable]
            try:
                action.default = _convert(action, text)
            except ValueError as err:
                action.default = EnvValueError(variable, text, str(err))
            setattr(action, _FROM_ENV, variable)
            # The variable supplies it: no longer required on the command line.
            action.required = False
            for group in p._mutually_exclusive_groups:
                if action in group._group_actions:
                    group.required = False


def _check_environment(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse a bad variable the chosen command reads; where a flag was
    given for one side of a mutually exclusive pair, drop the other side's
    value that came from the environment (the flag wins)."""
    for value in vars(args).values():
        if isinstance(value, EnvValueError):
            parser.error(value.message)
    for p in _parsers(parser):
        for group in p._mutually_exclusive_groups:
            actions = group._group_actions
            # An untouched default is the very object the environment gave.
            from_env = [a for a in actions if hasattr(a, _FROM_ENV) and a.default is not None
                        and getattr(args, a.dest, None) is a.default]
            given = [a for a in actions if a not in from_env and getattr(args, a.dest, None) not in (None, a.default)]
            if given:
                for a in from_env:
                    setattr(args, a.dest, None)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_environment(parser, args)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
