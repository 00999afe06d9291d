"""What every layer of regen shares (all but the simulator, which stands apart): the root of
the exception tree and :class:`ConfigError`, typed readers of environment variables,
secret masking, telling a setting's number from a bool or NaN, reading TOML settings
files, and reading what kind of image some bytes are.

It imports nothing else of regen.
"""

from __future__ import annotations

from regen.foundation._env import env_bool, env_float, env_int, env_seconds, env_str
from regen.foundation._errors import ConfigError, RegenError
from regen.foundation._files import new_temp_file
from regen.foundation._media import MEDIA_TYPES, MeasuredImage, measure_image, media_info, sniff
from regen.foundation._numbers import is_finite, is_whole
from regen.foundation._secrets import (
    MIN_SECRET_LENGTH,
    mask,
    mask_data,
    mask_secrets,
    remember_secret,
)
from regen.foundation._toml import read_toml

__all__ = [
    "MEDIA_TYPES",
    "MIN_SECRET_LENGTH",
    "ConfigError",
    "MeasuredImage",
    "RegenError",
    "env_bool",
    "env_float",
    "env_int",
    "env_seconds",
    "env_str",
    "is_finite",
    "is_whole",
    "mask",
    "mask_data",
    "mask_secrets",
    "measure_image",
    "media_info",
    "new_temp_file",
    "read_toml",
    "remember_secret",
    "sniff",
]
