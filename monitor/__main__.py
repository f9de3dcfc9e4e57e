"""`python -m monitor` runs the `tierdrift` command line."""

from monitor.cli import main

main()
