"""`python -m memwall` is the `memwall` command."""

from memwall.cli import main

main()
