"""The root of regen's exception tree, and the error for bad settings.

Every error regen raises derives from one root; each layer adds its subclasses next to the
code that raises them::

    RegenError
    ├── ConfigError            bad settings: a missing key, an invalid policy or variable
    ├── Retryable, Permanent, AttemptTimeout, GiveUp          (regen.retry)
    ├── ProviderError and its kinds                          (regen.providers)
    ├── StoreError and its kinds                             (regen.store)
    └── EngineError and its kinds                            (regen.engine)
"""

from __future__ import annotations


class RegenError(Exception):
    """The root of every error regen raises."""


class ConfigError(RegenError):
    """Settings are wrong: a missing API key, a policy that could retry forever, a bad variable."""
