"""The ``gemvec`` command line: one command, one module per subcommand."""

from gemvec.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
