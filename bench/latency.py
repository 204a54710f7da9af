"""Latency from end of speech to transcript: ours against the plain pipeline, in one run.

    python -m bench.latency [--bundle DIR ...] [--preset-shaped] [--n 10] [--json FILE]

plain: at end of speech, encode the whole utterance, conv bridge, token-by-token greedy decoding.
ours:  what the daemon does: the encoder ran on chunks while the user spoke (StreamingEncoder, the
       daemon's engine.stream_chunk_s / stream_context_s / stream_lookahead_s unless --chunk-s /
       --context-s / --lookahead-s), the
       utterance so far was decoded after each chunk (a draft hint), and at the VAD's SpeechPaused
       (halfway through its hangover) the whole turn of the audio so far was computed; the bundle's
       default bridge; joint CTC/LLM decoding with the speculative CTC draft.
End of speech is the VAD's decision (assistant/vad.py, the daemon's defaults), run on each sentence
followed by silence; both pipelines transcribe the VAD's segment. ours s = what is left after that
decision: the guess's compute time less the rest of the hangover (audio time) when the segment is the
guessed audio, else the tail encoding and the final decode. "compute s" is the guess's compute time
itself (what ours would take without the hangover), and c.ratio its ratio to plain.
Also reported: the real-time factor of each stage (stage seconds / audio seconds), the time to the
first response token after the transcript, the WER of both, and ours on the whole-utterance encoding
(what streaming costs in accuracy).
Model sets: each --bundle (default: the shipped demo bundle and a tiny random bundle), and with
--preset-shaped random weights shaped like HuBERT-base + Qwen2.5-0.5B (built once, ~2.4 GB, cached).
The JSON holds, per model set, plain_s, ours_s and ratio (medians over the utterances).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def utterances(n: int, seed: int = 0) -> list[tuple[np.ndarray, str]]:
    from assistant.synth import text as tx
    from assistant.synth.voices import synthesize
    from assistant.synth.voices_sets import train_voice_for

    out = []
    for u in tx.base_sentences(seed)["test"][200 : 200 + n]:
        out.append((synthesize(train_voice_for(u.id, seed), u.text, seed=seed), u.text))
    return out


def _decode(engine, enc, duration_s: float, bridge, speculative: bool, hint=None) -> tuple[str, float, int]:
    """Ours (speculative): the bundle's decoding, joint CTC/LLM included; plain: LLM greedy alone.
    -> (text, seconds, LLM passes)."""
    weight = engine.ctc_weight
    engine.ctc_weight = weight if speculative else 0.0
    try:
        t0 = time.perf_counter()
        text, res, _, _ = engine.transcribe_encoded(enc, duration_s, bridge=bridge, speculative=speculative,
                                                    hint=hint)
        return text, time.perf_counter() - t0, res.passes
    finally:
        engine.ctc_weight = weight


def vad_run(wave: np.ndarray, vad_config) -> dict:
    """The daemon's VAD over 0.5 s of silence, the utterance and 1 s of silence (-55 dBFS noise throughout,
    as from a quiet room: digital silence is no microphone's), in 30 ms frames: what it hands
    the stream while the utterance is spoken, its pause guess and its segment, with stream-clock times."""
    from assistant.audio import from_pcm16
    from assistant.vad import SpeechEnded, SpeechPaused, SpeechStarted, VadSegmenter

    x = np.concatenate([np.zeros(8000, np.float32), wave, np.zeros(16000, np.float32)])
    x = x + np.random.default_rng(len(wave)).normal(0, 10 ** (-55 / 20), len(x)).astype(np.float32)  # a room's hiss
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()
    vad = VadSegmenter(vad_config)
    blocks: list[tuple[float, bytes]] = []  # (clock, pcm handed to the stream) while the utterance is spoken
    out: dict = {"pauses": []}
    for off in range(0, len(pcm) - vad.frame_bytes + 1, vad.frame_bytes):
        for e in vad(pcm[off:off + vad.frame_bytes]):
            if isinstance(e, SpeechStarted) and "segment" not in out:
                blocks = []
            elif isinstance(e, SpeechPaused) and "segment" not in out:
                out["pauses"].append((vad.clock_s, e.samples, len(blocks)))
            elif isinstance(e, SpeechEnded) and "segment" not in out:
                out["segment"] = from_pcm16(e.segment.pcm, max_duration_s=600, min_duration_s=0.01).samples
                out["end_clock"] = vad.clock_s
                out["blocks"] = blocks
        if vad.active and "segment" not in out:
            blocks.append((vad.clock_s, vad.take_new_pcm()))
    if "segment" not in out:
        raise RuntimeError("the VAD found no utterance in a benchmark sentence")
    return out


def measure(bundle: Path, utts: list[tuple[np.ndarray, str]], chunk_s: float, context_s: float, lookahead_s: float,
            hints: bool = True, personal_top: bool = False) -> dict:
    import torch

    from assistant.config import VadConfig, load_config
    from assistant.engine.engine import Engine
    from assistant.engine.streaming import StreamingEncoder
    from assistant.metrics import wer

    engine = Engine.from_bundle(bundle, device="cpu")
    # plain decodes with a conv bridge where the bundle has one, else with its own bridge, LLM alone
    conv = engine.bridge if engine.bridge.kind == "conv" or "conv" not in engine.bundle.manifest.bridges else \
        Engine.load_bridge_for(engine.bundle.bridge_dir("conv"), engine.encoder, engine.llm)
    ours_bridge = engine.bridge
    if personal_top and engine.encoder.top_layers:  # what a job grows (head, adapter, top), untrained: same compute
        from assistant.alignment.trainers.base import candidate_of
        from assistant.config import AlignmentConfig

        a = AlignmentConfig()
        ours_bridge = candidate_of(engine.bridge, encoder_head=engine.encoder.ctc_head, adapter_dim=a.adapter_dim,
                                   adapter_kernel=a.adapter_kernel, adapter_dropout=a.adapter_dropout,
                                   encoder_top=engine.encoder.personal_top, top_layers=engine.encoder.top_layers)
        ours_bridge.module.eval().requires_grad_(False)
    from bench.peer import FasterWhisper, whisper_source_of

    source = whisper_source_of(bundle)
    peer = FasterWhisper(source, load_config(None).data_path) if source else None
    if peer is not None:
        peer.transcribe(utts[0][0])  # warm-up
    vad_config = VadConfig()
    rows = []
    engine.run(utts[0][0])  # warm-up
    for wave, ref in utts:
        v = vad_run(wave, vad_config)
        seg = v["segment"]
        dur = len(seg) / 16000
        # plain: everything after the VAD's end of speech
        t0 = time.perf_counter()
        enc = engine.encode([seg])[0]
        enc_s = time.perf_counter() - t0
        plain_text, dec_s, plain_passes = _decode(engine, enc, dur, conv, speculative=False)
        plain_s = time.perf_counter() - t0
        # the peer: faster-whisper on the same segment, all of it after the end of speech
        peer_res = peer.transcribe(seg) if peer is not None else None
        # ours, as the daemon (services/live.py): chunks encoded as the VAD hands the audio over, the
        # utterance so far decoded after each chunk (a draft hint), and at each SpeechPaused the whole
        # turn of the audio so far, in the rest of the hangover; the VAD's end takes it when it matches
        stream = StreamingEncoder(engine.encoder, chunk_s=chunk_s, context_s=context_s, lookahead_s=lookahead_s)
        during, hint, hinting, guess = 0.0, None, hints, None
        pauses = {i: (clock, n) for clock, n, i in v["pauses"]}
        for i, (_, block) in enumerate(v["blocks"]):
            t1 = time.perf_counter()
            chunks = stream.push(np.frombuffer(block, dtype="<i2").astype(np.float32) / 32768.0)
            if i in pauses and len(stream.audio) >= pauses[i][1]:  # as LiveStream.step: the guess first
                p_clock, n = pauses[i]
                t2 = time.perf_counter()
                audio = stream.audio[:n].copy()
                turn = engine.run(audio, respond=False, stream=stream.fork(), hint=hint)
                guess = (audio, turn, time.perf_counter() - t2, p_clock)
                continue
            if chunks and hinting:
                t2 = time.perf_counter()
                hint = engine.draft_hint(stream.partial(), bridge=ours_bridge)
                hinting = time.perf_counter() - t2 <= 0.5 * chunk_s  # services/live.py's rule
            during += time.perf_counter() - t1
        matched = guess is not None and len(guess[0]) == len(seg) and np.array_equal(guess[0], seg)
        if matched:
            _, turn, compute_s, p_clock = guess
            window_s = v["end_clock"] - p_clock  # audio time from the pause to the VAD's end
            ours_s = max(0.0, compute_s - window_s)  # what the hangover left to do after the end
        else:
            t0 = time.perf_counter()
            turn = engine.run(seg, respond=False, stream=stream, hint=hint)
            compute_s = ours_s = time.perf_counter() - t0
            window_s = 0.0
        ours_text, ours_passes, tail_s = turn.transcript, turn.transcript_passes, turn.timings.encoder_s
        whole_text, _, _ = _decode(engine, enc, dur, ours_bridge, speculative=engine.encoder.has_ctc)
        engine.reset_history()
        _, first_s = _first_token(engine, ours_text)
        rows.append({"dur": dur, "plain_s": plain_s, "ours_s": ours_s, "compute_s": compute_s,
                     "window_s": window_s, "matched": matched, "enc_rtf": enc_s / dur,
                     "dec_rtf": dec_s / dur, "stream_rtf": during / dur, "first_token_s": first_s,
                     "tail_s": tail_s, "plain_passes": plain_passes, "ours_passes": ours_passes, "ref": ref,
                     "plain": plain_text, "ours": ours_text, "whole": whole_text,
                     "peer_s": peer_res.seconds if peer_res else float("nan"),
                     "peer": peer_res.text if peer_res else ""})
    med = lambda k: statistics.median(r[k] for r in rows)  # noqa: E731
    refs = [r["ref"] for r in rows]
    return {"bundle": engine.bundle.manifest.name, "is_noise": engine.bundle.manifest.is_noise,
            "ours_bridge": ours_bridge.kind, "n": len(rows), "audio_s_median": round(med("dur"), 2),
            "plain_s": round(med("plain_s"), 4), "ours_s": round(med("ours_s"), 4),
            "ratio": round(med("ours_s") / med("plain_s"), 3),
            "ours_compute_s": round(med("compute_s"), 4),
            "compute_ratio": round(med("compute_s") / med("plain_s"), 3),
            "pause_window_s": round(med("window_s"), 3),
            "pause_guess_taken": sum(r["matched"] for r in rows),
            "ours_tail_encode_s": round(med("tail_s"), 4),
            "chunk_s": chunk_s, "context_s": context_s, "lookahead_s": lookahead_s, "hints": hints,
            "plain_passes": med("plain_passes"), "ours_passes": med("ours_passes"),
            "rtf": {"encoder": round(med("enc_rtf"), 4), "plain_decode": round(med("dec_rtf"), 4),
                    "streaming_encoder_during_speech": round(med("stream_rtf"), 4)},
            "first_response_token_s": round(med("first_token_s"), 4),
            "plain_wer": round(wer(refs, [r["plain"] for r in rows]).rate, 4),
            "ours_wer": round(wer(refs, [r["ours"] for r in rows]).rate, 4),
            "ours_whole_encoding_wer": round(wer(refs, [r["whole"] for r in rows]).rate, 4),
            "peer": f"faster-whisper {source}" if source else None,
            "peer_s": round(med("peer_s"), 4) if source else None,
            "ours_to_peer": round(med("ours_s") / med("peer_s"), 3) if source else None,
            "peer_wer": round(wer(refs, [r["peer"] for r in rows]).rate, 4) if source else None,
            "threads": torch.get_num_threads()}


def _first_token(engine, transcript: str) -> tuple[str, float]:
    """Time from transcript to the first response token (one prefill of the response prompt)."""
    import torch

    t0 = time.perf_counter()
    with torch.inference_mode():
        ids = engine.llm.response_ids(transcript, [])
        logits = engine.llm.model(inputs_embeds=engine.llm.embed_ids(ids), logits_to_keep=1).logits
        tok = int(logits[0, -1].argmax())
    return engine.llm.tokenizer.decode([tok]), time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", action="append", default=[])
    ap.add_argument("--preset-shaped", action="store_true", help="also random HuBERT-base + Qwen2.5-0.5B shapes")
    ap.add_argument("--n", type=int, default=10)
    from assistant.config import EngineConfig, VadConfig

    ap.add_argument("--chunk-s", type=float, default=EngineConfig.stream_chunk_s)
    ap.add_argument("--context-s", type=float, default=EngineConfig.stream_context_s)
    ap.add_argument("--lookahead-s", type=float, default=EngineConfig.stream_lookahead_s)
    ap.add_argument("--no-hints", action="store_true", help="no draft hints from decoding during speech")
    ap.add_argument("--personal-top", action="store_true",
                    help="ours serves a bridge with a personal head and top, as after a default job")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    from assistant.config import demo_bundle_dir
    from assistant.modelgen import build_bundle

    bundles = [Path(b) for b in args.bundle]
    tmp = Path(tempfile.mkdtemp(prefix="latency-"))
    if not bundles:
        if (demo_bundle_dir() / "manifest.json").is_file():
            bundles.append(demo_bundle_dir())
        bundles.append(build_bundle(tmp / "tiny"))
    if args.preset_shaped:
        cache = Path(os.environ.get("ASSISTANT_CACHE_DIR", Path.home() / ".cache" / "assistant")) / "preset-shaped"
        if not (cache / "manifest.json").is_file():
            print(f"==> building preset-shaped random bundle in {cache}", file=sys.stderr)
            build_bundle(cache, shape="preset")
        bundles.append(cache)
    utts = utterances(args.n)
    results = []
    for b in bundles:
        print(f"==> {b}", file=sys.stderr, flush=True)
        results.append(measure(b, utts, args.chunk_s, args.context_s, args.lookahead_s, hints=not args.no_hints,
                               personal_top=args.personal_top))
    print(f"end of speech (the VAD's decision) -> transcript, median over {args.n} espeak-ng utterances (CPU, "
          f"{results[0]['threads']} threads; streaming chunks {args.chunk_s} s, context {args.context_s} s, lookahead {args.lookahead_s} s, "
          f"draft hints {'off' if args.no_hints else 'on'}; hangover {VadConfig().hangover_ms} ms)")
    print(f"{'model set':<16}{'bridge':>7}{'plain s':>9}{'ours s':>9}{'ratio':>7}{'compute s':>10}{'c.ratio':>8}"
          f"{'guess':>6}{'tail enc s':>11}{'enc RTF':>9}{'dec RTF':>9}{'passes':>10}{'1st tok s':>10}"
          f"{'plain WER':>10}{'ours WER':>9}{'whole-enc WER':>14}")
    for r in results:
        print(f"{r['bundle']:<16}{r['ours_bridge']:>7}{r['plain_s']:>9.3f}{r['ours_s']:>9.3f}{r['ratio']:>7.2f}"
              f"{r['ours_compute_s']:>10.3f}{r['compute_ratio']:>8.2f}{str(r['pause_guess_taken']) + '/' + str(r['n']):>6}"
              f"{r['ours_tail_encode_s']:>11.3f}{r['rtf']['encoder']:>9.3f}{r['rtf']['plain_decode']:>9.3f}"
              f"{str(r['plain_passes']) + '/' + str(r['ours_passes']):>10}"
              f"{r['first_response_token_s']:>10.3f}{r['plain_wer']:>10.3f}{r['ours_wer']:>9.3f}"
              f"{r['ours_whole_encoding_wer']:>14.3f}")
    peers = [r for r in results if r["peer"]]
    if peers:
        print("\nthe peer on the same Whisper weights and the same VAD segments (greedy, int8, CPU):")
        print(f"{'model set':<22}{'peer':>28}{'peer s':>9}{'ours s':>9}{'ours/peer':>10}{'peer WER':>9}{'ours WER':>9}")
        for r in peers:
            print(f"{r['bundle']:<22}{r['peer']:>28}{r['peer_s']:>9.3f}{r['ours_s']:>9.3f}{r['ours_to_peer']:>10.2f}"
                  f"{r['peer_wer']:>9.3f}{r['ours_wer']:>9.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({r["bundle"]: r for r in results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
