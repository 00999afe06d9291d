"""Reading a TOML settings file, with errors that name the file and what it is for."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from regen.foundation._errors import ConfigError


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """The document in ``path``; a :class:`ConfigError` naming ``what`` (e.g. "providers
    file") when it does not exist or is not valid TOML."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} {path} is not valid TOML: {exc}") from None
