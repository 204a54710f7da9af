"""Timers and alarms: list them, cancel one, silence what rings."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from assistant_services.api.params import RowId
from assistant_services.api.routes_utterances import _in_session

router = APIRouter(tags=["timers"])


def _actions_on(request: Request):
    from assistant.errors import RefusedError

    daemon = request.app.state.daemon
    if daemon.timers is None:
        raise RefusedError("timers and alarms are turned off on this assistant",
                           fix="set [actions] enabled = true in the config and restart")
    return daemon


@router.get("/timers")
async def list_timers(request: Request, history: bool = Query(False, description="also fired and cancelled ones"),
                      limit: int = Query(100, ge=1, le=1000)) -> dict:
    """Pending and paused timers and alarms, the next due first (``history``: every one, newest first)."""
    from assistant.store import timers as tt

    def run(s):
        rows = tt.list_timers(s, active_only=not history, limit=limit)
        return {"timers": [tt.timer_to_dict(r) for r in rows],
                "ringing": bool(request.app.state.daemon.ringer and request.app.state.daemon.ringer.ringing)}

    return await _in_session(request, run, write=False)


@router.delete("/timers/{tid}")
async def cancel_timer(request: Request, tid: RowId) -> dict:
    """Cancel a pending or paused timer or alarm (a fired or cancelled one: 409)."""
    from assistant.store import timers as tt

    daemon = _actions_on(request)
    result = await _in_session(request, lambda s: tt.timer_to_dict(tt.cancel_timer(s, timer_id=tid)))
    daemon.timers.changed()
    return result


@router.post("/timers/stop")
async def stop_ringing(request: Request) -> dict:
    """Silence a ringing timer or alarm (the timer itself is already fired)."""
    import asyncio

    daemon = _actions_on(request)
    was = await asyncio.to_thread(daemon.ringer.stop)
    return {"was_ringing": was}
