"""``cd4ml``: the command line (typer; rich tables and progress).

The commands live in one module per group, each adding its commands to :data:`app`
with ``register(app)``; :data:`COMMAND_MODULES` lists them. What they share (the
options ``-p/--project``, ``--set``, ``--json``, the consoles, the JSON document, opening
a project's stores) is in :mod:`cd4ml.cli.common`.

Every command exits non-zero with one readable line on stderr when something is wrong;
``--json`` prints one JSON document on stdout. Modules here import only typer and rich at
the top; what a command needs is imported when it runs, so ``cd4ml --help`` and shell
completion stay quick.
"""

from __future__ import annotations

import importlib
import sys

import typer

from cd4ml.cli.common import HELP_MARKUP, err, fail
from cd4ml.errors import Cd4mlError, ValidationFailed

__all__ = ["app", "main", "COMMAND_MODULES"]

app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=HELP_MARKUP, help="Continuous delivery for machine learning.")

#: The modules of ``cd4ml.cli`` whose ``register(app)`` adds their commands, in the
#: order ``cd4ml --help`` lists them. A new group of commands is one more name here.
COMMAND_MODULES = (
    "pipeline",  # run, status, validate
    "runs",      # runs, runs diff
    "registry",  # models, promote
    "serving",   # serve, ui, predict
    "log",       # log status, log query, log export
    "monitor",   # monitor
    "rollout",   # deploy, rollout ..., rollback
    "data",      # example-data
    "init",      # init
)

for _name in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}").register(app)


def main() -> None:
    """The ``cd4ml`` entry point: run the app; a cd4ml error is one line, exit 1."""
    try:
        code = app(standalone_mode=False)  # a command's typer.Exit(n) comes back as n
    except ValidationFailed as exc:
        if exc.report is not None and hasattr(exc.report, "render"):
            err.print(exc.report.render())
        fail(exc)
    except Cd4mlError as exc:
        fail(exc)
    except (typer.Exit, SystemExit) as exc:
        sys.exit(getattr(exc, "exit_code", getattr(exc, "code", 0)))
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # usage errors: click's, or the copy typer >= 0.29 vendors
        for mod in ("click.exceptions", "typer._click.exceptions"):
            try:
                exceptions = __import__(mod, fromlist=["ClickException", "Abort"])
            except ImportError:
                continue
            if isinstance(exc, exceptions.ClickException):
                exc.show()
                sys.exit(exc.exit_code)
            abort = getattr(exceptions, "Abort", None)  # typer's vendored copy has none
            if abort is not None and isinstance(exc, abort):
                sys.exit(1)
        raise
    if isinstance(code, int) and code:
        sys.exit(code)
