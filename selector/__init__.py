"""selector: find real documents on alignment-relevant themes in web-scale dumps."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("selector")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
