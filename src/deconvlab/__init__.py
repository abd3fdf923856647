"""deconvlab: the helper package of the executable book *Deconvolution for Image Enhancement*.

Every concept is taught in its chapter notebook first; the package holds the same code so later chapters
can import it. A docstring's "Taught in chapter N" names a chapter that uses the function (tests/test_taught.py
checks it); helpers the chapters only reach through other functions carry no tag.
"""

__version__ = "0.1.0"

from .config import describe_runtime, get_profile, set_seed  # noqa: E402
from .errors import DeconvlabError  # noqa: E402

__all__ = ["DeconvlabError", "__version__", "describe_runtime", "get_profile", "set_seed"]

# Submodules load on first use (``dl.models``), so ``import deconvlab`` stays cheap and Keras starts only when needed.
_SUBMODULES = frozenset({
    "checks", "claims", "classical", "cli", "config", "console", "data", "degrade", "diagrams", "distribute", "errors", "evaluate",
    "grads", "infer", "io", "layers", "metrics", "models", "paths", "plots", "recipes", "registry", "report",
    "sampler", "tasks", "train", "weights", "fused",
})


def __getattr__(name: str):
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'deconvlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBMODULES)
