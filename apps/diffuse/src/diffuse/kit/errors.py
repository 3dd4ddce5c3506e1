"""One way to report a user's mistake: one line on stderr,

    diffuse: error: <what>, <which file or option>, <what was expected>

exit status 2 for a usage error (the command line itself) and 1 for a data or model error (a
file that is missing, unreadable or of the wrong kind) or a machine's (a full disk, an
unwritable or busy run folder); a traceback only with ``--debug``.
"""

from __future__ import annotations

import argparse
import re
import sys
import traceback
from typing import NoReturn

USAGE_STATUS = 2  # the command line is wrong (argparse's own status)
DATA_STATUS = 1  # the files it names are wrong


class UsageError(Exception):
    """A bad command line: an option's value, a missing or unknown option."""


class DataError(Exception):
    """A bad input file or folder (data or model), found before the domain code runs."""


# What domain code raises for bad input ("Errors are for people": they name what, where and
# what was expected). Anything else is a bug, reported as one and shown in full with --debug.
DATA_ERRORS: tuple[type[BaseException], ...] = (
    DataError,
    ValueError,
    TypeError,
    KeyError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    ConnectionError,  # a data set name that no hub could be asked about
    FloatingPointError,  # a training run that diverged (diffcore's NonFiniteLossError)
    OSError,  # the machine, not the code: a full disk, an unwritable or locked --out
)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with its errors raised as :class:`UsageError` (one line, no usage block)
    for :func:`report` to print; ``--help`` and its exit stay argparse's."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(usage_message(message, self.prog))


def _choices(text: str) -> str:
    return ", ".join(c.strip(" '") for c in text.split(","))


def usage_message(message: str, prog: str) -> str:
    """argparse's message in our shape: ``<what>, <option>, expected <what was expected>``."""
    message = " ".join(message.split())
    if required := re.fullmatch(r"the following arguments are required: (.*)", message):
        names = required[1]
        return f"{names} not given, {prog}, expected {names} (see `{prog} --help`)"
    if unknown := re.fullmatch(r"unrecognized arguments: (.*)", message):
        return f"unknown arguments {unknown[1]}, {prog}, expected the options of `{prog} --help`"
    argument = re.fullmatch(r"argument (\S+?): (.*)", message)
    if argument is None:
        return f"{message}, {prog}, expected the usage of `{prog} --help`"
    option = argument[1].split("/")[-1]  # "-n/--n" -> "--n"
    detail = argument[2]
    if choice := re.fullmatch(r"invalid choice: '?(.*?)'? \(choose from (.*)\)", detail):
        return f"unknown value '{choice[1]}', {option}, expected one of: {_choices(choice[2])}"
    if bad := re.fullmatch(r"invalid (\w+) value: (.*)", detail):
        kind = {"int": "a whole number", "float": "a number"}.get(bad[1], f"a {bad[1]}")
        return f"{bad[2]} is not {kind}, {option}, expected {kind}"
    if detail.startswith("expected "):  # "expected one argument"
        return f"{option} has no value, {option}, {detail}"
    if "; expected " in detail:  # our value checks: "<what>; expected <what>"
        what, expected = detail.split("; expected ", 1)
        return f"{what}, {option}, expected {expected}"
    return f"{detail}, {option}, expected the usage of `{prog} --help`"


def error_line(err: BaseException) -> str:
    """The exception's message on one line."""
    if isinstance(err, KeyError) and len(err.args) == 1:
        text = f"{err.args[0]!r} is not known"  # str(KeyError) is only the quoted key
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def report(err: BaseException, *, debug: bool = False) -> int:
    """Print ``err`` for a person (and its traceback with ``debug``); return the exit status."""
    if debug:
        traceback.print_exception(err, file=sys.stderr)
    if isinstance(err, UsageError):
        status, line = USAGE_STATUS, error_line(err)
    elif isinstance(err, DATA_ERRORS):
        status, line = DATA_STATUS, error_line(err)
    else:  # a bug, not the user's mistake: say so, in one line
        status = DATA_STATUS
        line = f"internal error ({type(err).__name__}: {error_line(err)}); rerun with --debug"
        line += " for the traceback" if not debug else ""
    print(f"diffuse: error: {line}", file=sys.stderr)
    return status
