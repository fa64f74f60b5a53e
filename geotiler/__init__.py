"""geotiler: satellite scenes and land-cover masks to training tiles, models and maps."""

__version__ = "0.1.0"
