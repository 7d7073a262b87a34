"""``python -m flexdiff``: the same command line as the ``flexdiff`` console script."""

from flexdiff.cli import main

if __name__ == "__main__":
    main()
