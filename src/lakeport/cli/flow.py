"""``lakeport flow ...``: run chained steps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from lakeport.cli.common import UrlOption, run, stderr, stop_on_signals

if TYPE_CHECKING:
    from lakeport.streams.flow import StepStats

app = typer.Typer(
    help="Run chained steps: consume a topic, transform, produce to the next topic.",
    no_args_is_help=True,
)


@app.command("run")
def run_(
    target: Annotated[str, typer.Argument(
        help="The step as module:name, e.g. examples.demo_step:process "
        "(the current directory is searched for the module).", show_default=False)],
    follow: Annotated[bool, typer.Option(
        "--follow/--no-follow",
        help="Keep waiting for input; --no-follow stops once the input is processed.")] = True,
    url: UrlOption = None,
) -> None:
    """Run a step until SIGTERM or Ctrl-C; the current batch is finished and acked first.

    A step is a function declared with @step(input="raw-sensor-data",
    output="transformed-data") from lakeport.streams.flow that returns the output payload
    (None drops the message, a list emits several); see examples/demo_step.py.

    Example: lakeport flow run examples.demo_step:process
    """
    from lakeport.streams.flow import load_step, run_step

    step_ = load_step(target)

    async def go() -> StepStats:
        with stop_on_signals() as stop:
            return await run_step(step_, url, stop, follow=follow)

    stderr.print(
        f"step [bold]{step_.name}[/]: {step_.input} → {step_.output} "
        f"({'Ctrl-C or SIGTERM stops it' if follow else 'until the input is processed'})"
    )
    stats = run(go())
    stderr.print(
        f"stopped step [bold]{step_.name}[/]: {stats.received:,} in, {stats.produced:,} out, "
        f"{stats.dropped:,} dropped, last input seqno {stats.last_input_seqno}"
    )
