"""How the command line reads values: the parser, a type per kind of value (``inputs``), and the
options that mean something only beside another. Every refusal here is one line and exit code 2,
made while the arguments are read, before any command starts work."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from controller.errors import UserError
from controller.inputs import COUNTS, SECONDS, BadValue, Positive, memory_bytes, path_text, size_bytes

LONG_OPTION = re.compile(r"^--[A-Za-z]")


class Parser(argparse.ArgumentParser):
    """argparse that answers a usage error in one line (and exit code 2), not with the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see: {self.prog} --help)\n")

    def _parse_optional(self, arg_string: str) -> Any:
        # A value that starts with '-' ("--request-rate -1,abc", "--threshold -5%") is a value, not an
        # unknown option: it reaches its own check, whose message says what is expected, instead of
        # argparse's "expected one argument". An unknown --word is still refused as an option.
        found = super()._parse_optional(arg_string)  # type: ignore[misc]
        if found is None:
            return None
        first = found[0] if isinstance(found, list) else found  # a list of tuples from Python 3.12
        if first[0] is None and not LONG_OPTION.match(arg_string):
            return None
        return found

    def _get_value(self, action: argparse.Action, arg_string: str) -> Any:
        # The subcommand's action sees every argument after it: the subcommand's own parser checks those.
        whole_rest = action.nargs in (argparse.PARSER, argparse.REMAINDER)
        if isinstance(arg_string, str) and not arg_string.strip() and not whole_rest:
            out = " or leave the option out" if action.option_strings and not action.required else ""
            raise argparse.ArgumentError(action, f"expected a value, got an empty one; give one{out}")
        return super()._get_value(action, arg_string)  # type: ignore[misc]


def _typed(check: Callable[[Any], Any], name: str, keep_text: bool = False) -> Callable[[str], Any]:
    """An argparse type from a checker of ``inputs``: its BadValue becomes argparse's one-line error."""

    def parse(text: str) -> Any:
        try:
            value = check(text)
        except BadValue as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text.strip() if keep_text else value

    parse.__name__ = name
    return parse


def count(name: str) -> Callable[[str], int]:
    return _typed(COUNTS[name], name)


def seconds(name: str) -> Callable[[str], float]:
    return _typed(SECONDS[name], name)


def positive(highest: float, unit: str = "") -> Callable[[str], float]:
    return _typed(Positive(highest, unit), "number")


size = _typed(size_bytes, "size", keep_text=True)
memory = _typed(memory_bytes, "memory", keep_text=True)
path_or_name = _typed(path_text, "path")  # a path, or a name that may be one (--model)


def file_path(text: str) -> Path:
    return Path(path_or_name(text))


def need(args: argparse.Namespace, pairs: list[tuple[str, str, str]]) -> None:
    """Refuse an option given without the one it needs: (option, the option it needs, what it does).

    Options are argparse dests; one counts as given when it is not None (such options default to
    None, and the settings' own default is filled in after this check)."""
    for given, needed, what in pairs:
        if getattr(args, given, None) is not None and getattr(args, needed, None) in (None, False, []):
            flag, other = _flag(given), _flag(needed)
            raise UserError(f"{flag} {what}: give {other} too, or leave {flag} out")


# Options whose dest is not their flag with dashes made underscores.
_FLAGS = {
    "duration_s": "--duration",
    "interval_s": "--interval",
    "timeout_s": "--timeout",
    "request_timeout_s": "--request-timeout",
    "ready_timeout_s": "--ready-timeout",
    "option_pairs": "--option",
    "input_shapes": "--input-shape",
    "overrides": "--set",
}


def _flag(dest: str) -> str:
    return _FLAGS.get(dest, "--" + dest.replace("_", "-"))


def refuse_with(args: argparse.Namespace, dests: list[str], condition: bool, why: str) -> None:
    """Refuse options that have no effect under ``condition`` (``why``: what makes them moot)."""
    given = [_flag(d) for d in dests if getattr(args, d, None) not in (None, False, [])]
    if condition and given:
        verb, them = ("has", "it") if len(given) == 1 else ("have", "them")
        raise UserError(f"{', '.join(given)} {verb} no effect {why}: leave {them} out")


def check_output_file(path: Path, what: str, example: str) -> None:
    """A file a command will write (replace): refused now if it is a folder or its folder is not writable."""
    from controller.cache import check_writable_folder

    if path.is_dir():
        raise UserError(f"{what} {path} is a folder; name the file to write, e.g. {path / example}")
    check_writable_folder(path.parent, f"the folder of {what}")
