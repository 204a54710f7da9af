"""The engine: 16 kHz speech -> frozen encoder -> bridge -> frozen LLM -> transcript, then response.

One Engine is owned by one inference thread. The bridge is one reference (``self.bridge``) that a turn
reads once at its start, so ``swap_bridge`` between turns is a hot-swap: a turn in flight finishes on
the version it started with, and the Turn says which version that was.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from datetime import datetime

import numpy as np
import torch

from assistant.bundle import Bundle, load_bundle
from assistant.engine.beam import BeamSettings, beam_search
from assistant.engine.bridge import bridge_ctc_logits, run_bridge
from assistant.engine.joint import joint_chooser, token_labels
from assistant.engine.lexicon import BiasChooser, LexiconBias, request_words
from assistant.engine.correct import Corrector
from assistant.engine.spotting import Spotter
from assistant.engine.checkpoint import LoadedBridge, check_compatible, load_bridge, read_bridge_config
from assistant.engine.decode import FIRST_PROPOSAL, MAX_PROPOSAL, DecodeResult, decode
from assistant.engine.encoder import EncoderOutput, SpeechEncoder, pick_device
from assistant.engine.llm import CausalLM
from assistant.engine.wordlm import WordLM, load_word_lm
from assistant.errors import BridgeMismatchError, ModelFilesError
from assistant.metrics import normalize
from assistant.skills import Action, answer as skill_answer
from assistant.skills.handoff import handoff_action
from assistant.units import TARGET_RATE_HZ

log = logging.getLogger(__name__)
MIN_KNOWN_SHARE = 0.5  # Engine.understood: the share of a transcript's words that must be known words
NOT_HEARD = "Sorry, I didn't catch that."  # the reply to audio whose transcript reads as no words


@dataclass(frozen=True)
class StageTimings:
    """Wall time of each stage of one turn, in seconds."""

    encoder_s: float = 0.0
    bridge_s: float = 0.0
    transcript_s: float = 0.0
    response_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.encoder_s + self.bridge_s + self.transcript_s + self.response_s


@dataclass(frozen=True)
class DraftHint:
    """The utterance so far, decoded while it was spoken (``Engine.draft_hint``). At its end, the final
    decode's draft takes these words (all but the last, which a chunk boundary may cut) and the CTC
    reading of the rest: a draft that agrees with the LLM where the CTC text alone misspells, so fewer
    passes are left after end of speech. Only a draft: the output is the same with or without it."""

    text: str  # the transcript of the frames so far
    ctc_text: str  # the greedy CTC reading of the same frames

    def draft(self, ctc_full: str) -> tuple[str, str] | None:
        """(the LLM's words kept, the CTC text after them), or None when the hint is too short to help."""
        words, part = self.text.split(), self.ctc_text.split()
        if len(words) < 2 or len(part) < 2:
            return None
        return " ".join(words[:-1]), " ".join(ctc_full.split()[len(part) - 1:])


@dataclass(frozen=True)
class Response:
    """A reply and where it came from: ``skill`` None means the LLM wrote it; ``action``: what the
    request asks to be done (the daemon executes it, and the outcome may change what is said)."""

    reply: str
    action: Action | None
    skill: str | None
    seconds: float


@dataclass(frozen=True)
class Turn:
    transcript: str
    response: str | None
    timings: StageTimings
    bridge_version: str
    audio_duration_s: float
    transcript_passes: int = 0  # LLM forward passes spent on the transcript (prefill included)
    draft_tokens: int = 0  # CTC draft length in LLM tokens (0: no speculative decoding)
    draft_accepted: int = 0
    streamed_audio_s: float = 0.0  # audio encoded while it was spoken (Engine.run(stream=)): not after its end
    encoded: EncoderOutput | None = field(default=None, repr=False, compare=False)
    action: Action | None = None  # what the request asks to be done (``run`` answers; only the daemon acts)

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("encoded")
        d["action"] = self.action.to_dict() if self.action else None
        d["timings"]["total_s"] = self.timings.total_s
        return d


class Engine:
    def __init__(self, encoder: SpeechEncoder, bridge: LoadedBridge, llm: CausalLM, *,
                 speculative: bool = True, bundle: Bundle | None = None, skills: bool = True) -> None:
        self.encoder = encoder
        # requests answered by computing or acting (assistant/skills) before the LLM is asked; None: LLM only
        self.skills = skill_answer if skills else None
        self.llm = llm
        self.bridge = bridge
        self.speculative = speculative and encoder.has_ctc and encoder.ctc_tokenizer is not None
        self._spotters: dict = {}  # the serving bridge's word spotter (_spotter)
        self._token_labels = None  # LLM token -> CTC labels, for joint decoding (built on first use)
        self._correctors: dict = {}  # the serving bridge's vocabulary corrector (_corrector)
        self.vocabulary: tuple[str, ...] = bundle.vocabulary() if bundle is not None else ()
        # the word LM of the bundle's training text, for the CTC reading's beam search (beam.py), or None
        self.word_lm: WordLM | None = load_word_lm(bundle.root) if bundle is not None else None
        self._ctc_labels: list[str | None] | None = None  # CTC label id -> its character, for beam search
        # joint CTC/LLM transcript decoding (engine/joint.py); the bundle's choice, settable
        self.ctc_weight = llm.prompt.joint_ctc_weight if encoder.has_ctc and encoder.ctc_tokenizer is not None else 0.0
        self.bundle = bundle
        self.history: deque[tuple[str, str]] = deque(maxlen=llm.prompt.history_turns)

    @classmethod
    def from_bundle(cls, path: str | Path, *, bridge_kind: str | None = None, device: str = "auto",
                    speculative: bool = True, data_dir: str | Path | None = None,
                    reply_adapter: bool = True, skills: bool = True) -> "Engine":
        """``data_dir``: where pretrained weights are assembled for a bundle that names them (None: the
        default data directory). ``reply_adapter=False``: the LLM without the bundle's reply adapter.
        ``skills=False``: the LLM writes every reply, calculations included."""
        bundle = load_bundle(path)
        m = bundle.manifest
        dev = pick_device(device)
        encoder = SpeechEncoder.load(bundle.encoder_dir, identity=m.encoder.id, device=dev, data_dir=data_dir)
        llm = CausalLM.load(bundle.llm_dir, m.prompt, identity=m.llm.id, device=dev, data_dir=data_dir,
                            reply_adapter_dir=bundle.reply_adapter_dir if reply_adapter else None)
        kind = bridge_kind or m.default_bridge
        if kind == "ctc" and not encoder.has_ctc:
            if "conv" not in m.bridges:
                raise BridgeMismatchError(
                    f"the ctc bridge needs an encoder with a CTC head; {m.encoder.id} has none",
                    fix="use a bundle with a conv bridge or an encoder with a CTC head")
            log.error("encoder %s has no CTC head: the ctc bridge cannot run, falling back to the conv bridge",
                      m.encoder.id)
            kind = "conv"
        bridge = cls.load_bridge_for(bundle.bridge_dir(kind), encoder, llm)
        if m.is_noise:
            log.warning("bundle %s has random weights: its transcripts and responses are noise", bundle.root)
        return cls(encoder, bridge, llm, speculative=speculative, bundle=bundle, skills=skills)

    @staticmethod
    def load_bridge_for(directory: str | Path, encoder: SpeechEncoder, llm: CausalLM) -> LoadedBridge:
        return load_bridge(directory, encoder_id=encoder.identity, llm_id=llm.identity, encoder_dim=encoder.dim,
                           llm_dim=llm.dim, ctc_blank_id=encoder.blank_id if encoder.has_ctc else None,
                           device=llm.device, encoder_top=encoder.personal_top if encoder.top_layers else None,
                           encoder_top_layers=encoder.top_layers)

    # --- hot-swap -----------------------------------------------------------------------------------
    def swap_bridge(self, new: LoadedBridge) -> LoadedBridge:
        """Make ``new`` the bridge of the next turn; returns the previous one (kept for rollback).

        The same check as loading from disk (``checkpoint.check_compatible``: dims, model identities, CTC
        head and blank id); a bridge that does not fit raises ``BridgeMismatchError`` and the old one stays.
        """
        check_compatible(new.config, self.encoder, self.llm)
        old, self.bridge = self.bridge, new
        return old

    # --- stages -------------------------------------------------------------------------------------
    def encode(self, waves: list[np.ndarray]) -> list[EncoderOutput]:
        return self.encoder.encode(waves)

    @torch.inference_mode()
    def transcribe_encoded(self, enc: EncoderOutput, duration_s: float, *, bridge: LoadedBridge | None = None,
                           speculative: bool | None = None, hint: DraftHint | None = None
                           ) -> tuple[str, DecodeResult, float, float]:
        """Transcript from one encoder output: (text, decode result, bridge_s, transcript_s)."""
        return self._transcribe(enc, duration_s, bridge or self.bridge, speculative, hint)[:4]

    def _transcribe(self, enc: EncoderOutput, duration_s: float, bridge: LoadedBridge, speculative: bool | None,
                    hint: DraftHint | None) -> tuple[str, DecodeResult, float, float, torch.Tensor | None]:
        """``transcribe_encoded``, plus the bridge's CTC logits it computed (None when it needed none)."""
        t0 = time.perf_counter()
        text_input = bridge.config.text_input
        use_draft = self.speculative if speculative is None else (speculative and self.encoder.has_ctc)
        spotter = self._spotter(bridge)
        # a personal CTC head (bridge) hears what the personalized bridge hears: it drafts and scores
        ctc_logits = bridge_ctc_logits(bridge.module, enc.features, enc.ctc_logits, enc.lower) \
            if (use_draft or self.ctc_weight > 0 or spotter is not None or text_input
                or self.llm.prompt.transcript_source == "ctc") else None
        if self.llm.prompt.transcript_source == "ctc" and ctc_logits is not None:
            text = self._beam_text(ctc_logits) if self.word_lm is not None and self.llm.prompt.lm_weight > 0 \
                else self.encoder.ctc_text(ctc_logits)
            if self.llm.prompt.draft_case == "lower":  # an upper-case CTC vocabulary (wav2vec2) reads as typed
                text = text.lower()
            t1 = time.perf_counter()  # the reading is the bridge's part; correction and spotting the transcript's
            corrector = self._corrector(bridge)
            if corrector is not None or spotter is not None:
                log_probs = torch.log_softmax(ctc_logits.float(), -1)
                text = corrector(text, log_probs) if corrector is not None else text
                text = spotter(text, log_probs) if spotter is not None else text
            return text, DecodeResult([], 0, "ctc"), t1 - t0, time.perf_counter() - t1, ctc_logits
        if text_input:  # the LLM reads its own tokens of the CTC reading (bridge.py)
            speech = self.llm.embed_ids(self.llm.text_ids(self.encoder.ctc_text(ctc_logits)))[0]
        else:
            speech = run_bridge(bridge.module, [enc.features], [enc.ctc_logits], [enc.lower])[0]
        t1 = time.perf_counter()
        prefix = self.llm.speech_prefix(speech)
        variants: list[list[int]] = []
        early = 0
        if use_draft and ctc_logits is not None:
            ctc_text = self.encoder.ctc_text(ctc_logits)
            merged = hint.draft(ctc_text) if hint is not None else None
            variants = self.llm.draft_variants(merged[1], prefix=merged[0]) if merged else \
                self.llm.draft_variants(ctc_text)
            # a draft that starts in the LLM's own words rides along in the prefill (decode.py)
            early = MAX_PROPOSAL if merged else FIRST_PROPOSAL
        chooser = None
        if self.ctc_weight > 0 and ctc_logits is not None:
            if self._token_labels is None:
                self._token_labels = token_labels(self.encoder.ctc_tokenizer, self.encoder.blank_id,
                                                  self.llm.token_text)
            chooser = joint_chooser(torch.log_softmax(ctc_logits.float(), -1), self.encoder.blank_id,
                                    self._token_labels, self.llm.transcript_stop_ids,
                                    self.ctc_weight, lexicon=bridge.config.lexicon,
                                    lexicon_bonus=bridge.config.lexicon_bonus)
        result = decode(self.llm.model, prefix, max_new_tokens=self.llm.transcript_budget(duration_s),
                        stop_ids=self.llm.transcript_stop_ids, draft_variants=variants, chooser=chooser,
                        first_proposal=early)
        text = self.llm.decode_text(result.token_ids)
        if spotter is not None and ctc_logits is not None:  # the user's names back in (spotting.py)
            text = spotter(text, torch.log_softmax(ctc_logits.float(), -1))
        return text, result, t1 - t0, time.perf_counter() - t1, ctc_logits

    def _beam_text(self, ctc_logits: torch.Tensor) -> str:
        """The CTC reading by beam search with the bundle's word LM (beam.py)."""
        if self._ctc_labels is None:
            tok = self.encoder.ctc_tokenizer
            special = set(getattr(tok, "all_special_tokens", []))
            pieces = tok.convert_ids_to_tokens(list(range(ctc_logits.shape[-1])))
            self._ctc_labels = [None if p is None or p in special else p.lower() for p in pieces]
        p = self.llm.prompt
        log_probs = torch.log_softmax(ctc_logits.float(), -1).cpu().numpy()
        return beam_search(log_probs, self._ctc_labels, int(self.encoder.blank_id), self.encoder.word_delimiter_id,
                           self.word_lm, BeamSettings(lm_weight=p.lm_weight, word_bonus=p.lm_word_bonus))

    def _corrector(self, bridge: LoadedBridge) -> Corrector | None:
        """The vocabulary corrector (correct.py) of the bundle's words and the bridge's lexicon, or None."""
        tol = self.llm.prompt.vocabulary_tolerance
        if tol <= 0 or not (self.vocabulary or bridge.config.lexicon) or self.encoder.ctc_tokenizer is None:
            return None
        p = self.llm.prompt  # candidates are scored as the beam scores a reading: the same LM terms
        key = (bridge.config.lexicon, tol, p.lm_weight, p.lm_word_bonus)
        cached = self._correctors.get(key)
        if cached is None:
            cached = Corrector([*self.vocabulary, *bridge.config.lexicon], self.encoder.ctc_ids,
                               int(self.encoder.blank_id), self.encoder.word_delimiter_id, tolerance=tol,
                               lm=self.word_lm, lm_weight=p.lm_weight, word_bonus=p.lm_word_bonus)
            self._correctors = {key: cached}  # one bridge serves at a time
        return cached

    def _spotter(self, bridge: LoadedBridge) -> Spotter | None:
        """The word spotter of a bridge whose config asks for one (its lexicon), built once per lexicon."""
        cfg = bridge.config
        if not (cfg.lexicon and cfg.lexicon_spotting and self.encoder.has_ctc and self.encoder.ctc_tokenizer):
            return None
        key = (cfg.lexicon, cfg.lexicon_spot_margin)  # all a spotter depends on, besides the encoder
        cached = self._spotters.get(key)
        if cached is None:
            cached = Spotter(cfg.lexicon, self.encoder.ctc_ids, int(self.encoder.blank_id),
                             self.encoder.word_delimiter_id, margin=cfg.lexicon_spot_margin)
            self._spotters = {key: cached}  # one bridge serves at a time: keep only the latest
        return cached

    @torch.inference_mode()
    def after_wake_phrase(self, enc: EncoderOutput, phrase: str, *, bridge: LoadedBridge | None = None
                          ) -> str | None:
        """When the utterance starts with ``phrase`` (scored on the CTC posteriors, engine/wake.py: the
        recognizer need not spell the phrase), the transcript of the rest, decoded on its own ("" when
        the phrase was all); None when it does not start with it, or nothing here can tell (no CTC)."""
        from assistant.engine.wake import phrase_start

        bridge = bridge or self.bridge
        words = self.encoder.ctc_ids(phrase)
        ctc = bridge_ctc_logits(bridge.module, enc.features, enc.ctc_logits, enc.lower)
        if ctc is None or not words:
            return None
        log_probs = torch.log_softmax(ctc.float(), -1).cpu().numpy()
        start = phrase_start(log_probs, words, self.encoder.word_delimiter_id, int(self.encoder.blank_id))
        if start is None or not start.heard:
            return None
        rest = start.end_frame + 1
        if enc.n_frames - rest < int(0.3 * enc.frame_rate_hz):  # the phrase alone
            return ""
        tail = enc.frames(rest)
        return self.transcribe_encoded(tail, tail.n_frames / enc.frame_rate_hz, bridge=bridge)[0]

    def understood(self, transcript: str, *, bridge: LoadedBridge | None = None) -> bool:
        """Whether ``transcript`` reads as words: at least half of them in the bundle's vocabulary or the
        bridge's personal lexicon. Silence, a tone or noise comes out of the CTC reading as "iiiiiii" or
        "llleleeee", which must get neither a reply nor an action. True when the bundle has no vocabulary
        to judge by (the tiny test bundles)."""
        words = normalize(transcript).split()
        if not words:
            return False
        if not self.vocabulary:
            return True
        known = set(self.vocabulary) | set((bridge or self.bridge).config.lexicon)
        hits = sum(w in known or (w.endswith("'s") and w[:-2] in known) for w in words)  # "nina's"
        return hits >= MIN_KNOWN_SHARE * len(words)

    def respond_text(self, transcript: str) -> tuple[str, float]:
        """(reply, seconds): ``respond`` without its action, for callers that only read replies."""
        r = self.respond(transcript)
        return r.reply, r.seconds

    @torch.inference_mode()
    def respond(self, transcript: str, now: datetime | None = None) -> Response:
        """The reply to ``transcript``: a skill's (with the action it asks for, if any) or the LLM's.
        ``now``: the local time the clock skill answers with (default: the device clock)."""
        t0 = time.perf_counter()
        answered = self.skills(transcript, now) if self.skills is not None else None
        if answered is not None:
            log.debug("reply from the %s skill", answered.skill)
            if self.history.maxlen:
                self.history.append((transcript, answered.reply))
            return Response(answered.reply, answered.action, answered.skill, time.perf_counter() - t0)
        ids = self.llm.response_ids(transcript, list(self.history))
        bonus = self.llm.prompt.response_copy_bonus
        words = request_words(transcript) if bonus > 0 else []
        chooser = BiasChooser(LexiconBias(words, bonus), self.llm.token_text, self.llm.response_stop_ids) \
            if words else None
        with self.llm.replying():
            result = decode(self.llm.model, self.llm.embed_ids(ids),
                            max_new_tokens=self.llm.prompt.response_max_new_tokens,
                            stop_ids=self.llm.response_stop_ids, chooser=chooser)
        reply = self.llm.decode_text(result.token_ids)
        if self.history.maxlen:
            self.history.append((transcript, reply))
        # an in-domain reply names what to hand off (assistant/skills/handoff.py): the daemon says the truth
        return Response(reply, handoff_action(reply, transcript), None, time.perf_counter() - t0)

    @torch.inference_mode()
    def draft_hint(self, enc: EncoderOutput, *, bridge: LoadedBridge | None = None) -> DraftHint | None:
        """Decode the utterance so far (chunks encoded while it is spoken) into a DraftHint."""
        if not self.speculative:
            return None
        bridge = bridge or self.bridge
        duration_s = enc.n_frames / enc.frame_rate_hz
        # the logits the transcript was read from: a personal top would otherwise run twice per chunk
        text, _, _, _, ctc = self._transcribe(enc, duration_s, bridge, None, None)
        if ctc is None:
            ctc = bridge_ctc_logits(bridge.module, enc.features, enc.ctc_logits, enc.lower)
        return DraftHint(text, self.encoder.ctc_text(ctc) if ctc is not None else "")

    def run(self, wave: np.ndarray, *, respond: bool = True, stream=None, hint: DraftHint | None = None) -> Turn:
        """One utterance (16 kHz mono float32) -> Turn. The bridge is read once, here.

        ``stream``: a StreamingEncoder that encoded this utterance's chunks while it was spoken; only
        the tail is encoded now (the whole wave when the stream's audio does not match it).
        ``hint``: what ``draft_hint`` made of those chunks (a better draft; the same output).
        """
        bridge = self.bridge
        duration_s = len(wave) / TARGET_RATE_HZ
        t0 = time.perf_counter()
        enc = stream.finish_for(wave) if stream is not None else None
        if stream is not None and enc is None:
            log.info("streamed chunks do not match the utterance's audio: encoding it whole")
        streamed_s = stream.reused_samples / TARGET_RATE_HZ if enc is not None else 0.0
        if enc is None:
            enc = self.encode([wave])[0]
        encoder_s = time.perf_counter() - t0
        text, result, bridge_s, transcript_s = self.transcribe_encoded(enc, duration_s, bridge=bridge, hint=hint)
        answer = self.respond(text) if respond and self.understood(text, bridge=bridge) else None
        reply, response_s = (answer.reply, answer.seconds) if answer else (NOT_HEARD if respond else None, 0.0)
        return Turn(transcript=text, response=reply, bridge_version=bridge.version, audio_duration_s=duration_s,
                    timings=StageTimings(encoder_s, bridge_s, transcript_s, response_s),
                    transcript_passes=result.passes, draft_tokens=result.draft_tokens,
                    draft_accepted=result.accepted_tokens, streamed_audio_s=streamed_s, encoded=enc,
                    action=answer.action if answer else None)

    def reset_history(self) -> None:
        self.history.clear()


def bridge_kinds_available(bundle: Bundle) -> dict[str, str]:
    """kind -> version of each bridge checkpoint in a bundle (for listings)."""
    out = {}
    for kind in bundle.manifest.bridges:
        try:
            out[kind] = read_bridge_config(bundle.bridge_dir(kind)).version
        except ModelFilesError as exc:
            out[kind] = f"unreadable ({exc.problem})"
    return out
