"""devloop: the inner loop for ML engineers (sync, hot-rerun, stream, promote)."""

__version__ = "0.1.0"
