"""`python -m flows.cli`: the fairchord command line."""

from flows.cli import main

main()
