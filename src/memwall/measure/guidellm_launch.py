"""guidellm's command line, with its Poisson start put in order. Run by guidellm's own Python
(its virtual environment, which has no memwall), so this file imports nothing from memwall.

guidellm 0.8.1's `AsyncPoissonStrategy.init_processes_start` sets the event that wakes its
workers before it moves the arrival clock (`_offset`) from its initial -1.0 to the start time.
A worker that wakes in between schedules every request from 1970: all are overdue and go out
at once. Here the clock is moved first, then the event is set; the rest is guidellm's own.
`engine.schedule_lost` still checks each run, for a guidellm this does not fit."""

import sys


def _start_in_order(strategy, start_time: float) -> None:
    from guidellm.scheduler.strategies import ThroughputStrategy

    offset = getattr(strategy, "_offset", None)
    if offset is not None:
        with offset.get_lock():
            offset.value = start_time
    ThroughputStrategy.init_processes_start(strategy, start_time)


def put_in_order() -> bool:
    """Replaces the Poisson strategy's start with `_start_in_order`; False when this guidellm
    has no such strategy to fix."""
    from guidellm.scheduler import strategies

    poisson = getattr(strategies, "AsyncPoissonStrategy", None)
    if poisson is None or not hasattr(poisson, "init_processes_start"):
        return False
    poisson.init_processes_start = _start_in_order
    return True


def main() -> int:
    from guidellm.__main__ import cli

    put_in_order()
    return cli()


if __name__ == "__main__":
    sys.exit(main())
