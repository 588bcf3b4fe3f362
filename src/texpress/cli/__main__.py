"""`python -m texpress.cli`: the `texpress` command without its installed script."""

from texpress.cli import main

main()
