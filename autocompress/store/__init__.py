"""Storage by URL: Optuna's RDB storage and our tables, one database, one code path."""

from autocompress.store.connection import (
    check_reachable,
    database_exists,
    optuna_storage,
    safe_url,
)
from autocompress.store.repository import Store

__all__ = ["Store", "check_reachable", "database_exists", "optuna_storage", "safe_url"]
