"""The ``edgeres`` command. Heavy libraries are imported inside the commands, so ``--help`` stays fast."""

from __future__ import annotations

import functools
import sys
from typing import Annotated, Callable

import typer

from edgeres.cli import bench_cmd, devices_cmd, diagnose_cmd, export_cmd, info_cmd, models_cmd, prune_cmd, quantize_cmd, report_cmd, run_cmd, train_cmd, tune_cmd

app = typer.Typer(
    name="edgeres",
    help="Take a ResNet to an edge device: train, quantize, prune, export, benchmark.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(shown: bool) -> None:
    if shown:
        from edgeres import __version__

        print(f"edgeres {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Status lines and progress off: results, "
                                        "warnings and errors only.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Take a ResNet to an edge device: train, quantize, prune, export, benchmark."""
    from edgeres.console import configure

    configure(quiet=quiet)


def _guarded(command: Callable) -> Callable:
    """User errors become one clear message and a non-zero exit, never a traceback; Ctrl-C exits 130.
    The message is printed verbatim: it holds paths and names, which are not markup."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        from edgeres.errors import EdgeresError

        try:
            return command(*args, **kwargs)
        except EdgeresError as exc:
            from edgeres.console import error

            error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:  # the file system said no where no step expected it (read-only, full, gone)
            from edgeres.console import error

            where = f" ({exc.filename})" if exc.filename else ""
            error(f"{exc.strerror or exc}{where}\n  hint: check that the workspace and the files named are "
                  "readable and writable, and that the disk has room")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            print("edgeres: interrupted; nothing half-written was kept", file=sys.stderr)
            raise typer.Exit(130) from None

    return run


for name, command in {
    "models": models_cmd.models,
    "train": train_cmd.train,
    "import": train_cmd.import_,
    "eval": train_cmd.eval_,
    "info": info_cmd.info,
    "quantize": quantize_cmd.quantize,
    "prune": prune_cmd.prune,
    "export": export_cmd.export,
    "devices": devices_cmd.devices,
    "bench": bench_cmd.bench,
    "report": report_cmd.report,
    "diagnose": diagnose_cmd.diagnose,
    "tune": tune_cmd.tune,
    "run": run_cmd.run,
}.items():
    app.command(name)(_guarded(command))


def main() -> None:
    app()
