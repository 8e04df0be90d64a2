"""``python -m shopcrm``: the command-line interface (the same as the ``shopcrm`` script)."""

from shopcrm.cli import main

if __name__ == "__main__":  # pragma: no branch
    raise SystemExit(main())
