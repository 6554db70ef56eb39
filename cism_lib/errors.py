"""Exceptions with messages a user can act on."""
from __future__ import annotations


class CismError(Exception):
    """Base class of every error cism_lib raises on purpose."""


class DataError(CismError, ValueError):
    """Bad input data: missing folder, wrong layout, corrupt image, unknown mask colour."""


class ConfigError(CismError, ValueError):
    """A configuration with unknown keys, wrong types or inconsistent values."""


class CheckpointError(CismError, RuntimeError):
    """A corrupt checkpoint or one made for a different configuration."""


class FolderBusyError(CismError, RuntimeError):
    """A run folder that another process is writing (runtime.folder_lock)."""


class DiskFullError(CismError, OSError):
    """A write that failed because the disk is full; the file it replaces is intact."""
