"""diffblocks: diffusion pipelines built from typed blocks wired into validated graphs."""

__version__ = "0.1.0"
