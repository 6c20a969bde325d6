"""``python -m hello_labels``: the ``hello-labels`` command."""
from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
