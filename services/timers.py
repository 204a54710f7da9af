"""When timers and alarms ring: the daemon's timer loop and the ring on the output device.

The rows in the store are the whole truth (assistant/store/timers.py). ``TimerService.run`` fires what
is due, then sleeps until the next due time or until an action changes the timers (``changed()``, from
any thread), and at most ``MAX_SLEEP_S`` so a wall-clock jump (NTP at boot) is noticed. At start it
fires what fell due while the daemon was down, marked late. Firing is: the row is marked (a repeating
alarm is moved to its next occurrence) and committed, then ``timer_fired`` goes on the event bus and the
ring starts; a crash between the commit and the ring loses that one ring, never the record.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import datetime, tzinfo
from typing import Any, Callable

import numpy as np

from assistant.store.models import utcnow

log = logging.getLogger(__name__)

MAX_SLEEP_S = 30.0
LATE_AFTER_S = 2.0  # fired this much after its due time: reported as late (the daemon was down or busy)


def chime(rate_hz: int, seconds: float = 1.0) -> np.ndarray:
    """Two short rising tones and a pause, float32 mono: one period of the ring."""
    t = np.arange(int(rate_hz * 0.15)) / rate_hz
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)
    tone = [0.3 * np.sin(2 * np.pi * f * t) * fade for f in (880.0, 1320.0)]
    gap = np.zeros(int(rate_hz * 0.05))
    out = np.concatenate([tone[0], gap, tone[1]])
    return np.concatenate([out, np.zeros(max(0, int(rate_hz * seconds) - len(out)))]).astype(np.float32)


class Ringer:
    """Plays the ring through the output device in a thread of its own, until ``seconds`` pass or
    ``stop()``. No output device is a warning, not an error: the event still reaches clients."""

    def __init__(self, *, enabled: bool, seconds: float, device: str = "",
                 play: Callable[[threading.Event, float], None] | None = None) -> None:
        self.enabled, self.seconds, self.device = enabled, seconds, device
        self._play = play or self._play_sounddevice
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def ringing(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def ring(self) -> None:
        if not self.enabled:
            return
        with self._lock:
            if self.ringing:  # one ring at a time; a second timer due now rings with the first
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._stop,), name="ring", daemon=True)
            self._thread.start()

    def stop(self) -> bool:
        """Silence the ring; True if it was ringing."""
        with self._lock:
            was = self.ringing
            self._stop.set()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=1.0)
        return was

    def _run(self, stop: threading.Event) -> None:
        try:
            self._play(stop, self.seconds)
        except Exception as exc:  # noqa: BLE001 - no device, device busy, PortAudio gone: logged, not fatal
            log.warning("could not ring through the output device %r: %s (set [output] device, or "
                        "[actions] ring = false)", self.device or "default", exc)

    def _play_sounddevice(self, stop: threading.Event, seconds: float) -> None:
        from assistant.units import TARGET_RATE_HZ
        from assistant_services.output import play

        period = chime(TARGET_RATE_HZ)
        play(np.tile(period, int(np.ceil(seconds * TARGET_RATE_HZ / len(period))))[: int(seconds * TARGET_RATE_HZ)], TARGET_RATE_HZ,
             self.device, stop)


class TimerService:
    def __init__(self, store, publish: Callable[..., None], ringer: Ringer, *, tz: tzinfo | None = None,
                 clock: Callable[[], datetime] = utcnow, say: Callable[[str], bool] | None = None) -> None:
        self.store, self.publish, self.ringer, self.tz, self.clock = store, publish, ringer, tz, clock
        self.say = say  # a reminder is said aloud ("Reminder: buy milk."); False/None: it rings instead
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def changed(self) -> None:
        """The timers changed (any thread): recompute the next due time now."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._changed.set)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        while True:
            try:
                fired, next_due = await asyncio.to_thread(self.fire_due)
            except Exception:  # a store error must not end the loop: the rows are still there next time
                log.exception("checking due timers failed; retrying")
                fired, next_due = [], None
            for event in fired:
                log.info("%s %s fired%s", event["kind"], event["id"], " (late)" if event["late"] else "")
                self.publish("timer_fired", **event)
                spoken = event["kind"] == "reminder" and self.say is not None and \
                    self.say(f"Reminder: {event['label']}.")
                if not spoken:
                    self.ringer.ring()
            wait = MAX_SLEEP_S if next_due is None else \
                min(MAX_SLEEP_S, max(0.0, (next_due - self.clock()).total_seconds()))
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=wait)
            except asyncio.TimeoutError:
                pass
            self._changed.clear()

    def fire_due(self) -> tuple[list[dict[str, Any]], datetime | None]:
        """Mark every due timer/alarm fired (one transaction); the events to publish and the next due time."""
        from assistant.skills.executor import next_occurrence
        from assistant.store import timers as tt

        now = self.clock()
        events = []
        with self.store.session() as s:
            for row in tt.due_timers(s, now=now):
                due = row.due_at
                again = next_occurrence(row.time_of_day, row.repeat, now, self.tz) \
                    if row.kind == "alarm" and row.repeat and row.time_of_day else None
                tt.mark_fired(s, row=row, now=now, next_due=again)
                events.append({"id": row.id, "kind": row.kind, "label": row.label, "due_at": due.isoformat(),
                               "late": bool(row.late_s and row.late_s > LATE_AFTER_S), "late_s": row.late_s,
                               "next_due_at": again.isoformat() if again else None})
            next_due = tt.next_due_at(s)
        return events, next_due
