"""``python -m deconvlab {enhance,evaluate,train,benchmark,fetch}``; the commands live in :mod:`deconvlab.cli`.

Taught in chapter 4 (notebooks/04_code_example).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run the command line; a Ctrl-C while the CLI's own imports load is one line and status 130 too."""
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt:
        print("deconvlab: error: interrupted; nothing was written", file=sys.stderr)
        return 130
    return cli_main(argv)


__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
