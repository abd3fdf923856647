"""``python -m deconvlab {enhance,evaluate,train,benchmark}``; the commands live in :mod:`deconvlab.cli`.

Taught in chapter 4 (notebooks/04_code_example).
"""

from __future__ import annotations

import sys

from .cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
