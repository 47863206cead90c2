"""The ``foadx`` command line: a thin skin over the library.

Every error — foadx's own and Click's usage errors alike — is one line on stderr, with the exit
codes of docs/design.md: 2 usage, 3 bad input, 4 check failed, 5 regression, 6 missing
dependency or hardware, 7 an output cannot be written (full disk, read-only or forbidden folder),
1 anything unexpected. Command modules import the library lazily, inside
the commands, so ``foadx --version`` and ``--help`` answer without loading torch.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from foadx._version import __version__
from foadx.errors import FoadxError


def _fail(message: str, code: int) -> None:
    typer.echo(f"foadx: error: {message}", err=True)
    raise typer.Exit(code)


class OneLineErrors(TyperGroup):
    """Runs the commands in Click's non-standalone mode so that a usage error is printed as one
    line like every other error, not as a framed box."""

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            result = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                  standalone_mode=False, **extra)
        except typer.Abort:
            result = 130
        except Exception as error:  # Click's exceptions (vendored by recent typer): duck-typed
            if not hasattr(error, "format_message") or not hasattr(error, "exit_code"):
                raise
            result = _report_click_error(error)
        code = result if isinstance(result, int) else 0
        if not standalone_mode:
            return code
        sys.exit(code)


def _report_click_error(error: Any) -> int:
    context = getattr(error, "ctx", None)
    if type(error).__name__ == "NoArgsIsHelpError":  # bare `foadx` or `foadx CMD`: the help
        typer.echo(context.get_help() if context else error.format_message())
        return 0
    message = " ".join(error.format_message().split())
    if error.exit_code == 2 and context is not None:  # a usage error
        message += f" (see '{context.command_path} --help')"
    typer.echo(f"foadx: error: {message}", err=True)
    return int(error.exit_code)


app = typer.Typer(
    cls=OneLineErrors,
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help=("foadx: prune CNNs with FOAD and take them to a fast, verified deployment.\n\n"
          "Example:\n"
          "  foadx prune mobilefacenet --data demo --flops-target 0.636 --round-to 16 --out out/mfn-foad\n\n"
          "Each command's help opens with an example: foadx COMMAND --help."),
)


def check_numbers(values: dict[str, Any]) -> None:
    from foadx_cli.options import check_numbers as check

    check(values)


def handles_errors(command: Callable) -> Callable:
    """One line and a distinct exit code instead of a traceback (FOADX_DEBUG=1 shows it); a
    library parameter the message names is shown as this command's flag. Numeric options are
    range-checked (``foadx_cli.options.check_numbers``) before the command starts."""
    flags = set(inspect.signature(command).parameters)

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            check_numbers(kwargs)
            return command(*args, **kwargs)
        except FoadxError as error:
            _fail(in_flags(str(error), error.parameters, flags), error.exit_code)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as error:  # the last resort: still one line, exit 1
            _fail_refused_write(error)
            if _out_of_memory(error):
                _fail("the work does not fit in memory: use a smaller --batch-size, --input-size or --images", 3)
            if os.environ.get("FOADX_DEBUG"):
                raise
            _fail(f"unexpected {type(error).__name__}: {error} (FOADX_DEBUG=1 shows the traceback)", 1)

    return wrapper


def in_flags(message: str, parameters: tuple[str, ...], flags: set[str]) -> str:
    """``message`` with each library parameter it names (``batch_size``) written as the
    command's flag (``--batch-size``), where the command has that option."""
    for name in parameters:
        if name in flags:
            message = re.sub(rf"(?<![\w-]){re.escape(name)}\b", "--" + name.replace("_", "-"), message, count=1)
    return message


def _fail_refused_write(error: BaseException) -> None:
    """A write the file system refused outside foadx's atomic writers is still exit 7."""
    from foadx.atomic import write_failure
    from foadx.errors import OutputError

    reason = write_failure(error, writing=False)
    if reason is not None:
        where = f" {error.filename}" if isinstance(error, OSError) and error.filename else ""
        _fail(f"cannot write the output{where}: {reason}", OutputError.exit_code)


def _out_of_memory(error: BaseException) -> bool:
    """torch reports a failed allocation as a RuntimeError (CPU) or OutOfMemoryError (CUDA)."""
    if isinstance(error, MemoryError):
        return True
    text = str(error)
    return "can't allocate memory" in text or "out of memory" in text.lower() or type(error).__name__ == "OutOfMemoryError"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"foadx {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """foadx: prune CNNs with FOAD and take them to a fast, verified deployment."""


# The commands register themselves on ``app`` when imported (after app and handles_errors exist),
# in the order `foadx --help` lists them: the pipeline's order.
from foadx_cli import prune_commands  # noqa: E402,F401,I001
from foadx_cli import train_commands  # noqa: E402,F401
from foadx_cli import deploy_commands  # noqa: E402,F401
from foadx_cli import pipeline_commands  # noqa: E402,F401


def main() -> None:
    app(prog_name="foadx")


if __name__ == "__main__":  # run as a file, this module is not foadx_cli.app: use the package's
    from foadx_cli.app import main as registered_main

    sys.exit(registered_main())
