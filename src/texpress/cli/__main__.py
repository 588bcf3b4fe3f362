"""`python -m texpress.cli`: the `texpress` command without its installed script."""

from texpress.cli import main

if __name__ == "__main__":
    main()
