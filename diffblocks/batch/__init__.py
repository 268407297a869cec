"""Batch generation: prompt lists in, one PNG per row plus a manifest out; resumable, and spread
over processes/GPUs with ``accelerate launch``. See docs/batch.md."""

from diffblocks.batch.rows import COLUMNS, BatchInputError, BatchRow, read_rows, rows_from_records
from diffblocks.batch.runner import BatchReport, Distribution, generate_many

__all__ = [
    "COLUMNS", "BatchInputError", "BatchReport", "BatchRow", "Distribution",
    "generate_many", "read_rows", "rows_from_records",
]
