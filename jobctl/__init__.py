"""jobctl: run database stored procedures as detached background jobs."""

__version__ = "0.1.0"
