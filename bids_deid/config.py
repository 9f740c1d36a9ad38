"""Kept for imports of ``bids_deid.config.Settings``: the settings live in :mod:`bids_deid.settings`."""

from __future__ import annotations

from .settings import Settings, default_private_dir, default_work_dir, locations

__all__ = ["Settings", "default_private_dir", "default_work_dir", "locations"]
