"""Prometheus metrics of one daemon (own registry: no process-global state, tests stay isolated)."""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

STAGES = ("encoder_s", "bridge_s", "transcript_s", "response_s")
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self, *, queue_depth: Callable[[], int], job_states: Callable[[], dict[str, int]]) -> None:
        self.registry = CollectorRegistry()
        self.utterances = Counter("assistant_utterances", "Utterances by outcome", ["outcome", "source"],
                                  registry=self.registry)
        self.stage = Histogram("assistant_stage_seconds", "Wall time per pipeline stage", ["stage"],
                               buckets=BUCKETS, registry=self.registry)
        self.turn = Histogram("assistant_turn_seconds", "Wall time of a whole turn", buckets=BUCKETS,
                              registry=self.registry)
        depth = Gauge("assistant_queue_depth", "Utterances waiting for the inference worker", registry=self.registry)
        depth.set_function(queue_depth)
        self._job_states = job_states
        self.jobs = Gauge("assistant_alignment_jobs", "Alignment jobs by state", ["state"], registry=self.registry)

    def observe_turn(self, timings: dict[str, float], source: str) -> None:
        for k in STAGES:
            self.stage.labels(stage=k.removesuffix("_s")).observe(timings.get(k, 0.0))
        self.turn.observe(sum(timings.get(k, 0.0) for k in STAGES))
        self.utterances.labels(outcome="done", source=source.split(":")[0]).inc()

    def count(self, outcome: str, source: str = "any") -> None:
        self.utterances.labels(outcome=outcome, source=source.split(":")[0]).inc()

    def render(self) -> bytes:
        for state, n in self._job_states().items():
            self.jobs.labels(state=state).set(n)
        return generate_latest(self.registry)
