"""One small error hierarchy for the whole package.

Every failure a reader can cause (a bad file, a missing data set, an argument out of range) raises a
subclass of :class:`DeconvlabError` whose message says what to do next. The CLI catches the base class
and prints a single line; notebooks show the message as is.
"""

from __future__ import annotations


class DeconvlabError(Exception):
    """Base class of every error this package raises on purpose."""


class ImageError(DeconvlabError):
    """An image could not be read, or its pixels are unusable."""


class ImageFileError(ImageError):
    """The path is missing, a directory, empty, not an image, or truncated."""


class ImageValueError(ImageError):
    """The array has NaN/inf values, the wrong rank or a zero-size axis."""


class ImageTooLargeError(ImageError):
    """More pixels than the configured limit (``DECONVLAB_MAX_PIXELS``)."""


class DataError(DeconvlabError):
    """A data set could not be found, downloaded or verified."""


class DownloadError(DataError):
    """A download failed (HTTP error, no network, truncated transfer)."""


class HashMismatchError(DataError):
    """A file's sha256 differs from the registry; the bad file is not kept."""


class UnknownDatasetError(DataError):
    """A data set or file name that the registry does not list."""


class WeightsError(DeconvlabError):
    """Shipped weights are missing, corrupted or fail their hash check."""


class ArgumentError(DeconvlabError, ValueError):
    """An argument out of range: unknown task, unsupported scale, sigma too large, ..."""


class TrainingError(DeconvlabError):
    """Training ended without a model to keep (its validation was never finite: it diverged)."""


class OutputError(DeconvlabError):
    """An output path exists (without ``overwrite``) or cannot be written."""
