"""What a retry would run again, and which of those steps act outside regen."""

from __future__ import annotations

from dataclasses import dataclass

from regen.engine import Engine, RunDetail, StepStatus


@dataclass(frozen=True, slots=True)
class RetryPlan:
    """The steps a retry runs again; ``side_effects``: those among them declared with
    ``side_effect=True`` that already ran (so their outside effect may happen twice);
    ``unknown``: the flow is not loaded here, so which steps have effects is not known."""

    reruns: list[str]
    side_effects: list[str]
    unknown: bool = False

    @property
    def warning(self) -> str | None:
        """The plan in words, when a retry may repeat an outside effect."""
        if self.side_effects:
            names = ", ".join(self.side_effects)
            return (
                f"this retry runs again {names}, declared with an outside effect "
                "(side_effect=True) that already ran: the effect may happen twice"
            )
        if self.unknown:
            return (
                "the run's flow is not loaded in this server, so whether this retry "
                "repeats an outside effect is not known"
            )
        return None


def plan(engine: Engine, detail: RunDetail, from_step: str | None) -> RetryPlan:
    """The plan of retrying ``detail``'s run (from ``from_step``, or from where it failed)."""
    steps = detail.steps
    if from_step is None:
        again = [s for s in steps if s.status is not StepStatus.SUCCEEDED]
    else:
        start = next(s.position for s in steps if s.name == from_step)
        again = [s for s in steps if s.position >= start]
    try:
        flow = engine.registry.get(detail.run.flow, detail.run.flow_ref)
    except Exception:  # an unloadable flow must not stop the retry itself
        return RetryPlan([s.name for s in again], [], unknown=True)
    effects = {spec.name for spec in flow.steps if spec.side_effect}
    ran = [
        s.name
        for s in again
        if s.name in effects and (s.attempts > 0 or s.status is not StepStatus.PENDING)
    ]
    return RetryPlan([s.name for s in again], ran)
