"""``python -m lrbench.cli``: the ``lrbench`` console script."""

from lrbench.cli import app

if __name__ == "__main__":
    app()
