"""Sequential composition of recipes: e.g. ``embed+backprop`` = embed warm start, then backprop.

Each stage gets its share of ``max_steps`` and starts from the weights the previous stage ended with
(``setup(init=...)``); every stage still names the serving bridge as the parent (version bookkeeping,
and the anchor pulls toward the parent, not toward the previous stage). Progress is reported on the
whole job's step count. A checkpoint is the running stage's checkpoint in ``stage<i>/`` plus
``sequence.json`` (which stage, time spent in finished stages).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from assistant.alignment.trainers.backprop import TranscriptObjective
from assistant.alignment.trainers.base import LabelledExample, Progress, TrainSettings
from assistant.alignment.trainers.batches import mean_objective
from assistant.engine.checkpoint import LoadedBridge
from assistant.errors import ModelFilesError

log = logging.getLogger(__name__)

SEQUENCE_NAME = "sequence.json"


class SequentialRecipe:
    def __init__(self, name: str, stages: Sequence[tuple[Any, float]]) -> None:
        if not stages or abs(sum(share for _, share in stages) - 1.0) > 1e-6:
            raise ValueError("stages need shares that sum to 1")
        self.name = name
        self.stages = [stage for stage, _ in stages]
        self.shares = [share for _, share in stages]

    def _steps(self, total: int) -> list[int]:
        counts = [int(total * s) for s in self.shares[:-1]]
        return [*counts, total - sum(counts)]

    def _setup_stage(self, i: int, *, resume_from: Path | None, init: torch.nn.Module | None) -> None:
        settings = dataclasses.replace(self.settings, max_steps=self.counts[i])
        self.stages[i].setup(self.engine, self.parent, self.train_set, settings, resume_from=resume_from, init=init)
        self.current = i

    # --- protocol -------------------------------------------------------------------------------------
    def setup(self, engine: Any, parent: LoadedBridge, train: Sequence[LabelledExample], settings: TrainSettings,
              *, resume_from: Path | None = None) -> None:
        self.engine, self.parent, self.train_set, self.settings = engine, parent, train, settings
        self.counts = self._steps(settings.max_steps)
        self.seconds_before = 0.0
        if resume_from is None:
            self._setup_stage(0, resume_from=None, init=None)
            return
        try:
            meta = json.loads((Path(resume_from) / SEQUENCE_NAME).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelFilesError(f"training checkpoint {resume_from} is missing or unreadable: {exc}") from exc
        if meta.get("recipe") != self.name:
            raise ModelFilesError(f"{resume_from} holds a {meta.get('recipe')!r} job, not {self.name!r}")
        self.seconds_before = float(meta["seconds_before"])
        stage = int(meta["stage"])
        # the stage checkpoint holds the weights, so no init is needed
        self._setup_stage(stage, resume_from=Path(resume_from) / f"stage{stage}", init=None)

    def train(self, *, should_pause: Callable[[], bool], on_progress: Callable[[Progress], None]) -> str:
        while True:
            i = self.current
            offset, before = sum(self.counts[:i]), self.seconds_before

            def report(p: Progress, offset: int = offset, before: float = before) -> None:
                on_progress(Progress(offset + p.step, self.settings.max_steps, p.loss, before + p.seconds,
                                     p.extra_memory_mb))

            stage = self.stages[i]
            if stage.train(should_pause=should_pause, on_progress=report) == "paused":
                return "paused"
            if i + 1 == len(self.stages):
                return "done"
            log.info("%s: stage %s done, starting %s", self.name, stage.name, self.stages[i + 1].name)
            self.seconds_before += stage.loop.seconds
            self._setup_stage(i + 1, resume_from=None, init=stage.candidate.module)
            stage.cleanup()

    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        self.stages[self.current].save(directory / f"stage{self.current}")
        tmp = directory / (SEQUENCE_NAME + ".tmp")
        tmp.write_text(json.dumps({"recipe": self.name, "stage": self.current,
                                   "seconds_before": self.seconds_before}), "utf-8")
        os.replace(tmp, directory / SEQUENCE_NAME)
        return directory

    def result(self) -> LoadedBridge:
        res = self.stages[self.current].result()
        stages = [{"method": s.name, "steps": n} for s, n in zip(self.stages, self.counts)]
        training = {**res.config.training, "method": self.name, "stages": stages, "max_steps": self.settings.max_steps,
                    "steps_done": sum(self.counts[: self.current]) + self.stages[self.current].loop.step,
                    "seconds": round(self.seconds_before + self.stages[self.current].loop.seconds, 2)}
        return LoadedBridge(module=res.module, config=dataclasses.replace(res.config, training=training))

    def cleanup(self) -> None:
        self.stages[self.current].cleanup()

    # --- extras ---------------------------------------------------------------------------------------
    @property
    def step(self) -> int:
        return sum(self.counts[: self.current]) + self.stages[self.current].loop.step

    def extra_memory_mb(self) -> float:
        return self.stages[self.current].extra_memory_mb()

    def evaluate(self) -> float:
        """The transcript loss (what the last stage optimises) of the current candidate on the training set."""
        stage = self.stages[self.current]
        objective = TranscriptObjective(stage.llm, stage.inputs)
        return mean_objective(objective, stage.candidate.module, stage.plan.eval_batches(self.settings.batch_size))
