"""festivals-exporter: a Prometheus exporter and synthetic prober for the Festivals platform."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("festivals-exporter")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+dev"
