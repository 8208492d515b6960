"""Completing an order by hand (`ombre orders complete`, `POST /api/v1/orders/complete`).

Where the order runs on machines without a job signal, their jobs end through the
shadow, which is the only writer of job rows: a job command each, as the API's
`job/complete`; the order is completed once its last job ended. An order no machine
runs is completed at once. A machine with a job signal says itself when its job ends,
so an order it runs is refused."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shadow.config import ShadowMachineConfig
from shadow.store import ShadowStore


class UnknownOrderError(LookupError):
    """No order has the job key."""


class CompletionRefusedError(Exception):
    """The order cannot be completed by hand; the message says why."""


@dataclass(frozen=True, slots=True)
class Completion:
    """The job commands recorded, as (machine, command id), for the running shadow to
    apply; or none, and the order's status now, which `changed` or was already so."""

    commands: tuple[tuple[str, int], ...]
    status: str
    changed: bool


def complete_order(store: ShadowStore, machines: Sequence[ShadowMachineConfig], key: str,
                   by: str, now_ns: int) -> Completion:
    """Completes the order of job key `key` for `by`, as the module says."""
    found = store.orders(key)
    if not found:
        raise UnknownOrderError(f"no order with job key {key!r}")
    configured = {m.id: m for m in machines}
    running = [m for m in store.running_jobs(key) if m in configured]
    signalled = [m for m in running if configured[m].job_signal is not None]
    if signalled:
        raise CompletionRefusedError(f"{key} runs on {', '.join(signalled)}, whose job "
                                     "signal ends it")
    if running:
        return Completion(tuple((m, store.request_job(m, None, now_ns, by)) for m in running),
                          "running", False)
    if store.complete_order(key, now_ns, by):
        return Completion((), "completed", True)
    return Completion((), str(found[0]["status"]), False)
