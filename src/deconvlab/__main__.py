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
        # console is light (the standard library beyond what `import deconvlab` loaded) and usually already in
        # place through cli; its line survives a closed stderr, where print() raised and the status became 1.
        from .console import EX_INTERRUPTED, fail

        fail("interrupted; nothing was written")
        return EX_INTERRUPTED
    return cli_main(argv)


__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
