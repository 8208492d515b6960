"""Starting and completing jobs through the API, for shops without an MES signal.

The live model runs in the gateway (the shadow sink) and is the only writer of the job
and interval rows, while the API may run in another process. So the API does not touch
the model: it records a job command, which the shadow applies in order, at the data
time it has reached, as it would a job signal. The answer is 202 with the command; its
`applied_ns` and `result` tell when and how it was applied."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from api import audit
from api.deps import AsOperator, AsViewer, Now, RowId, Scope, Store, Visible
from shadow.config import ShadowMachineConfig
from shadow.orders import job_key
from shadow.tables import TEXT

router = APIRouter(tags=["jobs"])


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    order: str = Field(min_length=1, max_length=200, pattern=TEXT)
    operation: str = Field(default="", max_length=64, pattern=TEXT)

    @property
    def job_key(self) -> str:
        return job_key(self.order, self.operation)


class JobCommandOut(BaseModel):
    """A job start or completion; `applied_ns` is null until the shadow applied it."""

    id: int
    machine: str
    action: Literal["start", "complete"]
    job: str | None
    requested_ns: int
    requested_by: str
    applied_ns: int | None
    result: str | None


def _without_job_signal(scope: Scope, machine_id: str) -> ShadowMachineConfig:
    [found] = scope.machines(machine_id)
    if found.job_signal is not None:
        raise HTTPException(409, f"machine {machine_id!r} takes its job from its signal "
                                 f"{found.job_signal!r}; it cannot be set by hand")
    return found


def _one(rows: list[Any], command_id: int, scope: Scope) -> JobCommandOut:
    ids = scope.ids()
    if not rows or (ids is not None and rows[0].machine_id not in ids):
        raise HTTPException(404, f"no job command {command_id}")
    r = rows[0]
    return JobCommandOut(id=r.id, machine=r.machine_id, action=r.action, job=r.job_key,
                         requested_ns=r.requested_ns, requested_by=r.requested_by,
                         applied_ns=r.applied_ns, result=r.result)


@router.post("/machines/{machine_id}/job", status_code=202)
def start_job(machine_id: str, body: JobIn, *, token: AsOperator, store: Store,
              scope: Visible, now: Now) -> JobCommandOut:
    """Starts the job of an imported order on the machine (ending the one it runs)."""
    machine = _without_job_signal(scope, machine_id)
    if not store.orders(body.job_key):
        raise HTTPException(404, f"no order with job key {body.job_key!r}; create or import "
                                 "it first")
    command_id = store.request_job(machine.id, body.job_key, now, token.name)
    audit.record(store, token, "job.start", f"machine {machine.id}", now_ns=now,
                 details={"job": body.job_key, "command": command_id})
    return _one(store.job_commands(command_id=command_id), command_id, scope)


@router.post("/machines/{machine_id}/job/complete", status_code=202)
def complete_job(machine_id: str, *, token: AsOperator, store: Store, scope: Visible,
                 now: Now) -> JobCommandOut:
    """Completes the machine's job: it ends, and its order is completed."""
    machine = _without_job_signal(scope, machine_id)
    running = (store.snapshots().get(machine.id) or {}).get("job")
    if running is None and not store.job_commands(pending=True, machine=machine.id):
        raise HTTPException(409, f"machine {machine_id!r} runs no job")
    command_id = store.request_job(machine.id, None, now, token.name)
    audit.record(store, token, "job.complete", f"machine {machine.id}", now_ns=now,
                 details={"command": command_id})
    return _one(store.job_commands(command_id=command_id), command_id, scope)


@router.get("/job-commands/{command_id}")
def get_job_command(command_id: RowId, _: AsViewer, store: Store,
                    scope: Visible) -> JobCommandOut:
    """A job command, to see whether and how the shadow applied it."""
    return _one(store.job_commands(command_id=command_id), command_id, scope)
