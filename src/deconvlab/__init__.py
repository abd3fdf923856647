"""deconvlab: the helper package of the executable book *Deconvolution for Image Enhancement*.

Every concept is taught in its chapter notebook first; the package holds the same code so later chapters
can import it. Each public function's docstring names the chapter that teaches it.
"""

__version__ = "0.1.0"

from .config import describe_runtime, get_profile, set_seed  # noqa: E402
from .errors import DeconvlabError  # noqa: E402

__all__ = ["DeconvlabError", "__version__", "describe_runtime", "get_profile", "set_seed"]
