"""crossings: a geospatial API for reports of people crossing an international land border."""

__version__ = "0.1.0"
