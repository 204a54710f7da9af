"""Assemble the demo bundle directory from trained parts, and evaluate a bundle on manifests."""

from __future__ import annotations

import dataclasses

import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from assistant.bundle import BundleManifest, ComponentSpec, PromptFormat, fingerprint, save_manifest

# The demo LLM's prompt layout (see lm_train.py): speech prompt "<bos> speech <sep>", transcript ends
# with <eos>; response prompt "{transcript}<reply>" with no history (a 2M-parameter LM cannot use it).
DEMO_PROMPT = PromptFormat(
    instruction="",
    separator="<sep>",
    speech_bos=True,
    transcript_tokens_per_s=18.0,
    response="plain",
    plain_template="{transcript}<reply>",
    plain_turn_end="<eos>",
    response_max_new_tokens=80,
    history_turns=0,
    draft_case="lower",
)


def load_waves(rows: Sequence[dict]) -> list[np.ndarray]:
    from assistant.audio import load_audio

    return [load_audio(r["audio"], max_duration_s=60).samples for r in rows]


def read_rows(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def write_manifest(out: Path, *, enc_id: str, llm_id: str, bridges: dict[str, str], default: str,
                   build: dict, metrics: dict, joint_ctc_weight: float = 0.0,
                   response_copy_bonus: float = 0.0) -> None:
    save_manifest(out, BundleManifest(
        name="demo",
        description=("small models trained on synthetic espeak-ng speech: understands spoken English "
                     "voice-assistant requests (timers, alarms, weather, calls, music, smart home, dates, numbers)"),
        encoder=ComponentSpec(path="encoder", id=enc_id),
        llm=ComponentSpec(path="llm", id=llm_id),
        prompt=dataclasses.replace(DEMO_PROMPT, joint_ctc_weight=joint_ctc_weight,
                                   response_copy_bonus=response_copy_bonus),
        bridges=bridges,
        default_bridge=default,
        is_noise=False,
        build=build,
        metrics=metrics,
    ))


def ids(out: Path) -> tuple[str, str]:
    return fingerprint(out / "encoder", "demo-w2vbert-ctc"), fingerprint(out / "llm", "demo-char-llama")


def transcribe_rows(engine, waves: Sequence[np.ndarray], batch: int = 16) -> tuple[list[str], float]:
    """Transcripts for many utterances (encoder batched, decoding one by one); returns seconds too."""
    t0 = time.perf_counter()
    hyps = []
    for s in range(0, len(waves), batch):
        chunk = waves[s : s + batch]
        for w, enc in zip(chunk, engine.encode(list(chunk))):
            text, _, _, _ = engine.transcribe_encoded(enc, len(w) / 16000)
            hyps.append(text)
    return hyps, time.perf_counter() - t0


def evaluate(engine, rows: Sequence[dict], waves: Sequence[np.ndarray] | None = None) -> dict:
    from assistant.metrics import cer, wer

    waves = waves if waves is not None else load_waves(rows)
    hyps, seconds = transcribe_rows(engine, waves)
    refs = [r["text"] for r in rows]
    w, c = wer(refs, hyps), cer(refs, hyps)
    audio_s = sum(len(x) for x in waves) / 16000
    return {"n": len(rows), "wer": round(w.rate, 4), "wer_ci95": [round(x, 4) for x in w.ci95],
            "cer": round(c.rate, 4), "rtf": round(seconds / max(audio_s, 1e-9), 4), "hyps": hyps}


def save_regression(out: Path, engine, rows: Sequence[dict], waves: Sequence[np.ndarray], name: str = "regression"
                    ) -> None:
    """A cached generic set (see assistant/alignment/regression.py): ``regression`` for the alignment
    quality gate (held-out voices x test sentences), ``replay`` for mixing generic speech into
    personalization batches (training voices x training sentences: never the gate's own set)."""
    from assistant.alignment.regression import save_regression_set

    encoded = engine.encoder.encode_many(list(waves))
    save_regression_set(out / name, encoded, [dict(id=r["id"], voice=r["voice"], text=r["text"]) for r in rows],
                        encoder_id=engine.encoder.identity)
