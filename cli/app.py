"""The ``foadx`` command line: a thin skin over the library.

Every command turns foadx's exceptions into one line on stderr and the exit codes of
DESIGN.md (3 bad input, 4 check failed, 5 regression, 6 missing dependency/hardware, 1 other).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from foadx._version import __version__
from foadx.errors import FoadxError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="foadx: prune CNNs with FOAD and take them to a fast, verified deployment.",
)


def _fail(message: str, code: int) -> None:
    typer.echo(f"foadx: error: {message}", err=True)
    raise typer.Exit(code)


def handles_errors(command: Callable) -> Callable:
    """One line and a distinct exit code instead of a traceback (FOADX_DEBUG=1 shows it)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except FoadxError as error:
            _fail(str(error), error.exit_code)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as error:  # the last resort: still one line, exit 1
            if os.environ.get("FOADX_DEBUG"):
                raise
            _fail(f"unexpected {type(error).__name__}: {error} (FOADX_DEBUG=1 shows the traceback)", 1)

    return wrapper


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


def main() -> None:
    app(prog_name="foadx")


if __name__ == "__main__":  # run as a file, this module is not foadx_cli.app: use the package's
    from foadx_cli.app import main as registered_main

    sys.exit(registered_main())
