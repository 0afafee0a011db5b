"""``python -m cd4ml.cli``: the ``cd4ml`` command."""

from cd4ml.cli import main

if __name__ == "__main__":
    main()
