"""The AdamW training loop shared by the gradient recipes (backprop, embed); they differ in the objective.

Composition: a ``GradientRecipe`` is given an objective factory ``(llm, inputs) -> objective`` and an
optional ``around_step`` context (backprop uses it for gradient checkpointing). Each step: batch from the
seeded plan, lr from the step (warm-up + cosine), loss = objective + optional anchor
``0.5 * w * sum ||theta - theta_parent||^2``, backward, clip to norm 1, AdamW (no weight decay: the
anchor, not a pull toward zero, is what keeps the bridge near a working one).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Callable, ContextManager, Sequence

import torch

from assistant.alignment.trainers.base import (LabelledExample, MemoryMeter, Progress, StepLoop, TrainSettings,
                                               anchor_of, candidate_of, finished_bridge, growth_of, lr_factor,
                                               module_device, release_memory, routed_by_voice)
from assistant.alignment.trainers.batches import BatchPlan, BridgeInputs, fingerprint, mean_objective
from assistant.alignment.trainers.state import (load_module, load_optimizer, module_tensors, optimizer_state,
                                                read_state, write_state)
from assistant.engine.checkpoint import LoadedBridge

log = logging.getLogger(__name__)

Objective = Callable[[torch.nn.Module, Sequence[int]], torch.Tensor]
ObjectiveFactory = Callable[..., Objective]  # (llm, inputs, *, ctc_weight) -> objective


@torch.no_grad()
def add_anchor_gradient(params: Sequence[torch.Tensor], anchor: Sequence[torch.Tensor] | None, weight: float) -> None:
    """Add the gradient of ``0.5 * weight * sum ||p - a||^2`` to each ``p.grad``, one tensor at a time:
    through autograd the penalty keeps a difference and a square of every weight (56 MB more for a
    personal top) until backward."""
    if anchor is None or weight == 0:
        return
    for p, a in zip(params, anchor):
        if p.requires_grad:
            diff = p - a.to(p.dtype)
            p.grad = diff.mul_(weight) if p.grad is None else p.grad.add_(diff, alpha=weight)


class GradientRecipe:
    def __init__(self, name: str, make_objective: ObjectiveFactory, *,
                 around_step: Callable[[Any], ContextManager[None]] | None = None, clip_norm: float = 1.0) -> None:
        self.name = name
        self.make_objective = make_objective
        self.around_step = around_step
        self.clip_norm = clip_norm
        self._ready = False

    # --- protocol -------------------------------------------------------------------------------------
    def setup(self, engine: Any, parent: LoadedBridge, train: Sequence[LabelledExample], settings: TrainSettings,
              *, resume_from: Path | None = None, init: torch.nn.Module | None = None) -> None:
        self.llm = engine.llm
        self.settings = settings
        growth = growth_of(engine, parent, settings)
        self.candidate = candidate_of(parent, init, **growth)
        module = self.candidate.module.train().requires_grad_(True)
        device = module_device(module)
        self.meter = MemoryMeter(device)
        self.data = fingerprint(train)
        self.n_train = len(train)
        self.inputs = BridgeInputs(module, [*train, *settings.replay], device,
                                   ctc_ids=engine.encoder.ctc_ids if growth else None)
        self.plan = BatchPlan(self.inputs.texts, self.inputs.frames, len(train), len(settings.replay),
                              settings.batch_size, settings.replay_share, settings.seed)
        self.objective = self.make_objective(self.llm, self.inputs, ctc_weight=settings.ctc_weight if growth else 0.0)
        self.params = [p for p in module.parameters()]
        # the anchor is the parent's function: the grown parent when the candidate grew a head
        self.anchor = anchor_of(parent, growth, module, engine.encoder) if settings.anchor_weight > 0 else None
        self.opt = torch.optim.AdamW(self._param_groups(module, parent, settings), lr=settings.learning_rate,
                                     weight_decay=0.0)
        self.loop = StepLoop(settings.max_steps, self.meter)
        if resume_from is not None:
            tensors, meta = read_state(resume_from, recipe=self.name, fingerprint=self.data)
            load_module("bridge", module, tensors)
            load_optimizer(self.opt, tensors, meta["optimizer"])
            self.loop.restore(meta)
            log.info("%s: resumed at step %d/%d from %s", self.name, self.loop.step, self.loop.total, resume_from)
        self._ready = True

    def train(self, *, should_pause: Callable[[], bool], on_progress: Callable[[Progress], None]) -> str:
        status = self.loop.run(self._step, should_pause, on_progress, self.name)
        if status == "done":
            log.info("%s: %d steps in %.1f s, last loss %.4f, extra memory %.0f MB", self.name, self.loop.total,
                     self.loop.seconds, self.loop.last_loss, self.meter.extra_mb())
        return status

    def save(self, directory: Path) -> Path:
        opt_tensors, opt_meta = optimizer_state(self.opt)
        tensors = {**module_tensors("bridge", self.candidate.module), **opt_tensors}
        meta = {"recipe": self.name, "data": self.data, "settings": self.settings.to_json(),
                "optimizer": opt_meta, "rng": {"derived_from": ["seed", "step"], "seed": self.settings.seed},
                **self.loop.record()}
        return write_state(Path(directory), tensors, meta)

    def result(self) -> LoadedBridge:
        res = finished_bridge(self.candidate, self.candidate.module, self.training_record())
        if self.settings.voice_routing and self.inputs.dynamic:  # items: [*train, *replay], raw frames
            res = routed_by_voice(res, self.inputs.items[: self.n_train], self.inputs.items[self.n_train:])
        return res

    def cleanup(self) -> None:
        for name in ("inputs", "objective", "opt", "anchor", "params", "plan"):
            self.__dict__.pop(name, None)
        self._ready = False
        release_memory()

    @staticmethod
    def _param_groups(module: torch.nn.Module, parent: LoadedBridge, settings: TrainSettings) -> list[dict]:
        """Weights the parent had train at ``parent_lr_scale`` x the rate (frozen at 0); grown ones at full,
        except a grown personal top's pretrained layers, at ``top_lr_scale`` x the rate."""
        inherited = set(parent.module.state_dict())
        old = [p for n, p in module.named_parameters() if n in inherited]
        top = [p for n, p in module.named_parameters() if n not in inherited and n.startswith("top.")]
        new = [p for n, p in module.named_parameters() if n not in inherited and not n.startswith("top.")]
        scale = settings.parent_lr_scale
        if scale == 0:
            for p in old:
                p.requires_grad_(False)
        groups = [{"params": new, "base_lr": settings.learning_rate}] if new else []
        if top:
            groups.append({"params": top, "base_lr": settings.learning_rate * settings.top_lr_scale})
        if old and scale > 0:
            groups.append({"params": old, "base_lr": settings.learning_rate * scale})
        return groups

    # --- extras ---------------------------------------------------------------------------------------
    def training_record(self) -> dict[str, Any]:
        return {"method": self.name, **self.settings.to_json(), "steps_done": self.loop.step,
                "n_train": self.n_train, "final_loss": self.loop.last_loss,
                "seconds": round(self.loop.seconds, 2), "extra_memory_mb": self.meter.extra_mb()}

    def extra_memory_mb(self) -> float:
        return self.meter.extra_mb()

    def evaluate(self, objective: Objective | None = None) -> float:
        """The objective (default: this recipe's) over the training examples, no anchor, no gradients."""
        return mean_objective(objective or self.objective, self.candidate.module,
                              self.plan.eval_batches(self.settings.batch_size))

    @property
    def step(self) -> int:
        return self.loop.step

    def _step(self, step: int) -> float:
        idx = self.plan.batch(step)
        for g in self.opt.param_groups:
            g["lr"] = g["base_lr"] * lr_factor(step, self.settings.max_steps)
        self.opt.zero_grad(set_to_none=True)
        ctx = self.around_step(self.llm) if self.around_step is not None else contextlib.nullcontext()
        micro = self.settings.micro_batch_size or len(idx)
        parts = [idx[i:i + micro] for i in range(0, len(idx), micro)]
        with ctx:
            # Parts weigh by their share of the batch's examples: the batch's mean loss when each part's
            # objective is a per-example mean (the token-mean transcript loss is weighed by examples
            # here, not tokens: a small difference, and only when micro-batches are on).
            loss = torch.zeros(())
            for part in parts:
                part_loss = self.objective(self.candidate.module, part) * (len(part) / len(idx))
                if len(parts) > 1:
                    part_loss.backward()  # frees this part's activations before the next one
                    part_loss = part_loss.detach()
                loss = loss + part_loss
            if loss.requires_grad:
                loss.backward()  # inside the context: checkpointed layers recompute during backward
        add_anchor_gradient(self.params, self.anchor, self.settings.anchor_weight)
        if not torch.isfinite(loss):
            log.warning("%s: non-finite loss at step %d; update skipped", self.name, step)
            self.opt.zero_grad(set_to_none=True)
            return float(loss)
        torch.nn.utils.clip_grad_norm_(self.params, self.clip_norm)
        self.opt.step()
        return float(loss.detach())
