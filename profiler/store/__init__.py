"""Run records (schema-versioned JSON written point by point: ``record``, ``schema``) and
operating-point documents for schedulers and ``wattbench apply`` (``points``)."""

from wattbench.profiler.store.record import (
    REMEDY,
    STATUSES,
    RecordError,
    RecordExistsError,
    RunRecord,
    collect_versions,
    default_results_dir,
    default_run_path,
    device_json,
    ensure_writable_dir,
    load,
    now_utc,
)
from wattbench.profiler.store.schema import (
    SCHEMA_ID,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    json_schema,
    validate,
)

__all__ = [
    "REMEDY",
    "SCHEMA_ID",
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "STATUSES",
    "RecordError",
    "RecordExistsError",
    "RunRecord",
    "collect_versions",
    "default_results_dir",
    "default_run_path",
    "device_json",
    "ensure_writable_dir",
    "json_schema",
    "load",
    "now_utc",
    "validate",
]
