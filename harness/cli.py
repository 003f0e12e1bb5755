"""The ``lrbench`` command line: thin commands over the library.

TensorFlow and Ray are imported only inside the commands that need them, so
``--help`` and a bad grid file's error come back at once.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from harness.errors import LrbenchError

if TYPE_CHECKING:
    from harness.grid import GridSpec

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="lrbench: which optimizer and learning rate train a model, and how fast.",
)

GridArg = Annotated[Path, typer.Argument(help="Grid file (TOML).", show_default=False)]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _notes(spec: GridSpec) -> None:
    for why in spec.skipped:
        typer.echo(f"note: skipped {why}", err=True)


@app.command()
def sweep(
    grid: GridArg,
    out: Annotated[
        str | None, typer.Option(help="Results directory or URI (default: results/<grid name>).")
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(help="Join an existing Ray cluster (e.g. ray://head:10001, or 'auto')."),
    ] = None,
    data_dir: Annotated[
        str | None,
        typer.Option(
            help="Directory holding dataset files (mnist.npz, fashion-mnist/); never downloads."
        ),
    ] = None,
    max_failures: Annotated[
        int, typer.Option(min=0, help="Retries of a trial whose worker died.")
    ] = 2,
    verbose: Annotated[bool, typer.Option(help="Show Ray's and workers' logs.")] = False,
) -> None:
    """Run a grid (resumes: trials already stored are skipped)."""
    from harness.grid import load_grid

    target = out or "results/<grid name>"
    try:
        spec = load_grid(grid)
        _notes(spec)
        target = out or str(Path("results") / spec.name)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from harness.sweep import run_sweep

        result = run_sweep(
            spec,
            target,
            address=address,
            data_dir=data_dir,
            max_failures=max_failures,
            verbose=verbose,
        )
    except LrbenchError as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        typer.echo(
            f"\ninterrupted: finished trials are stored in {target}; "
            "run the same command to resume",
            err=True,
        )
        raise typer.Exit(130) from None
    counts = ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items()))
    typer.echo(
        f"{result.out}: {result.total} trials ({result.already_stored} already stored, "
        f"{result.ran} run now) in {result.wall_s:.1f}s: {counts}"
    )
    if result.unfinished:
        raise _fail(
            f"{result.unfinished} trials did not finish (status error); "
            "run the same command to retry them",
            code=1,
        )


@app.command()
def show(
    grid: GridArg,
    cpus: Annotated[
        float | None, typer.Option(help="CPUs to plan for (default: this machine's).")
    ] = None,
    gpus: Annotated[float, typer.Option(help="GPUs to plan for.")] = 0.0,
) -> None:
    """Show a grid expanded: its axes, trial count and worst-case time."""
    from harness.grid import load_grid, plan

    try:
        spec = load_grid(grid)
    except LrbenchError as exc:
        raise _fail(str(exc)) from None
    _notes(spec)
    for line in plan(spec, cpus if cpus is not None else float(os.cpu_count() or 1), gpus):
        typer.echo(line)


@app.command()
def report(
    results: Annotated[
        list[str],
        typer.Argument(help="Results directories (or URIs) of lrbench sweeps.", show_default=False),
    ],
    out: Annotated[
        str | None,
        typer.Option(
            help="Report folder (default: DIR/report; DIR/report-vs-<others> for several DIRs)."
        ),
    ] = None,
    min_success: Annotated[
        float,
        typer.Option(
            help="Share of a cell's finished trials (seeds) that must reach the target "
            "for the cell to count as a success.",
        ),
    ] = 0.5,
) -> None:
    """Tables and figures from results directories: writes index.html, PNG/SVG
    figures and CSV/Markdown tables, and prints the per-optimizer table."""
    if not 0 < min_success <= 1:
        raise _fail(f"--min-success: {min_success} is outside (0, 1]")
    from analysis.load import load_results
    from analysis.report import default_out, display_tables, write_report

    try:
        loaded = load_results(results)
        written = write_report(loaded, out or default_out(results), min_success)
    except LrbenchError as exc:
        raise _fail(str(exc)) from None
    _print_tables(display_tables(written.tables))
    typer.echo(f"report: {os.path.join(written.out, 'index.html')}")


def _print_tables(shown: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 140))
    for name, title in (
        ("summary", "Sweeps"),
        ("optimizers", "Per optimizer"),
        ("union_band", "Union band: LRs where at least one optimizer succeeds"),
        ("compare", "Comparison (ratios to the first results directory)"),
        ("scaling", "Width scaling: fits of time to target against size"),
    ):
        if name not in shown:
            continue
        frame = shown[name]
        table = Table(title=title, title_justify="left", header_style="bold")
        for column in frame.columns:
            table.add_column(str(column))
        for row in frame.itertuples(index=False):
            table.add_row(*(str(v) for v in row))
        console.print(table)


def main() -> None:
    """Entry point of the ``lrbench`` console script."""
    try:
        app()
    except LrbenchError as exc:  # raised outside a command's own handler
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
