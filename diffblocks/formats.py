"""diffusers' on-disk format, as we read and write it.

`DIFFUSERS_FORMAT_VERSION` is the diffusers release whose folder layout, config.json and
scheduler_config.json keys we follow (the one our parity tests run against). Everything we
save (model configs, scheduler configs, model indexes) says so in `_diffusers_version`, so
diffusers reads our folders like its own.
"""

from __future__ import annotations

DIFFUSERS_FORMAT_VERSION = "0.42.1"
