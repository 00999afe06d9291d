"""Finding flows: by ``MODULE:FLOW`` import string, or by name among those registered."""

from __future__ import annotations

import importlib

from regen.engine._errors import FlowNotFound
from regen.engine._flow import Flow


def load_flow(ref: str) -> Flow:
    """The :class:`Flow` an import string names: ``"examples.daily_news.workflow:flow"``."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise FlowNotFound(f"{ref!r}: expected MODULE:FLOW, e.g. examples.daily_news.workflow:flow")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise FlowNotFound(f"{ref!r}: cannot import module {module_name!r} ({exc})") from exc
    value: object = module
    for part in attr.split("."):
        value = getattr(value, part, None)
        if value is None:
            flows = sorted(k for k, v in vars(module).items() if isinstance(v, Flow))
            raise FlowNotFound(
                f"{ref!r}: module {module_name!r} has no {attr!r}; flows in it: "
                f"{', '.join(flows) or 'none'}"
            )
    if not isinstance(value, Flow):
        raise FlowNotFound(f"{ref!r} is a {type(value).__name__}, not a regen Flow")
    value.ref = ref
    return value


class Registry:
    """Flows this process knows, by name."""

    def __init__(self) -> None:
        self._flows: dict[str, Flow] = {}

    def add(self, flow: Flow) -> Flow:
        """Register ``flow`` (another flow of the same name is refused)."""
        known = self._flows.get(flow.name)
        if known is not None and known is not flow:
            raise FlowNotFound(f"two different flows are named {flow.name!r}; rename one")
        self._flows[flow.name] = flow
        return flow

    def names(self) -> list[str]:
        """Names of the registered flows."""
        return sorted(self._flows)

    def get(self, name: str, ref: str | None = None) -> Flow:
        """The flow called ``name``, importing ``ref`` if it is not registered yet."""
        flow = self._flows.get(name)
        if flow is not None:
            return flow
        if ref is None or ref.startswith("__main__:"):
            raise FlowNotFound(
                f"flow {name!r} is not registered in this process and its run "
                "records no importable MODULE:FLOW; register it or pass its "
                "import string"
            )
        flow = load_flow(ref)
        if flow.name != name:
            raise FlowNotFound(f"{ref!r} is flow {flow.name!r}, not {name!r}")
        return self.add(flow)
