"""What a buffered run keeps per device, per version and per call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flwr.common import Parameters
from flwr.server.client_proxy import ClientProxy


@dataclass
class DeviceState:
    proxy: ClientProxy
    busy: bool = False  # a job is queued or running
    base: int | None = None  # version its latest fit was sent with
    fit_sent: float | None = None  # a fit is on its way since (None: none)
    evaluated: int = 0  # every version up to this one is (being) evaluated
    reported: set[int] = field(default_factory=set)
    rebind_base: int | None = None  # its late update awaits re-basing (trained on this base)
    rebind_sent: float | None = None  # a re-based update is on its way since
    rebind_epochs: int = 0  # local epochs of the update awaiting re-basing

    @property
    def cid(self) -> str:
        return str(self.proxy.cid)


@dataclass
class Version:
    number: int
    parameters: Parameters
    evals: list[tuple[ClientProxy, Any]] = field(default_factory=list)
    eval_failures: list[Any] = field(default_factory=list)
    eval_seconds: list[float] = field(default_factory=list)
    evaluated: bool = False  # every device answered (or failed)
    recorded: bool = False
    reports: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Call:
    kind: str  # "fit" | "rebind" | "evaluate" | "report"
    version: int  # fit/rebind: the base version; evaluate/report: the version
    ins: Any
    bound_to: int = 0  # fit/rebind: the version the update is encrypted for
    evaluates: int = 0  # fit/rebind: the version it also evaluates in the same message (0: none)
    epochs: int = 0  # fit: local epochs asked for; rebind: those of the update re-based

    @property
    def method(self) -> str:
        return "fit" if self.kind in ("fit", "rebind") else "evaluate"


@dataclass(frozen=True)
class Event:
    device: DeviceState
    call: Call | None  # None: the job is done
    result: Any = None
    failure: Any = None
    seconds: float = 0.0
