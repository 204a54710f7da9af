"""Configuration: frozen dataclasses loaded from one TOML file, validated with errors naming the key.

Search order when no ``--config`` is given: ``$ASSISTANT_CONFIG``, ``/etc/assistant/config.toml``
(systemd), ``$XDG_CONFIG_HOME/assistant/config.toml``; none found means the defaults.
Nothing is built at import time: callers ``load_config()`` and pass the result down.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from assistant.errors import ConfigError
from assistant.strict import from_dict

# The personalization methods ``[alignment] method`` may name; ``alignment.trainers`` builds a recipe for
# each (``make_recipe``), "default" standing for the best one the bridge allows (``resolve_method``).
METHODS = ("default", "backprop", "zo", "embed", "ctc")

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (JetPack 6)
    import tomli as tomllib


def default_data_dir() -> Path:
    env = os.environ.get("ASSISTANT_DATA_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "assistant"


def demo_bundle_dir() -> Path:
    """The bundle shipped inside the package, the default (built by ``python -m bench.real.build``)."""
    return Path(__file__).resolve().parent / "demo"


@dataclass(frozen=True)
class AudioConfig:
    max_duration_s: float = 30.0
    min_duration_s: float = 0.1

    def __post_init__(self) -> None:
        _check(self.min_duration_s > 0, "audio.min_duration_s", "a number > 0")
        _check(self.max_duration_s > self.min_duration_s, "audio.max_duration_s", "a number > audio.min_duration_s")


@dataclass(frozen=True)
class EngineConfig:
    bundle: str = ""  # empty: the shipped bundle if present, else <data_dir>/bundles/tiny
    bridge_kind: str = ""  # empty: the bundle's default bridge
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    speculative: bool = True  # CTC-draft speculative transcript decoding when the encoder has a CTC head
    threads: int = 0  # torch intra-op threads; 0 leaves torch's default
    # Microphone speech is encoded in chunks of this length while it is spoken, each with this much audio
    # before it as context and a chunk final once stream_lookahead_s more has arrived, so only the tail is
    # left at end of speech (bench/latency.py); 0: off. Without lookahead Whisper reads a chunk's last
    # frames worse (40 utterances: WER 0.079 whole, 0.114 from 2 s chunks, 0.082 with 1 s lookahead).
    stream_chunk_s: float = 2.0
    stream_context_s: float = 2.0
    stream_lookahead_s: float = 1.0

    def __post_init__(self) -> None:
        _check(self.bridge_kind in ("", "conv", "ctc"), "engine.bridge_kind", "'', 'conv', 'ctc'")
        _check(self.stream_chunk_s == 0 or self.stream_chunk_s >= 0.5, "engine.stream_chunk_s",
               "0 (off) or a number of seconds >= 0.5")
        _check(self.stream_context_s >= 0, "engine.stream_context_s", "a number of seconds >= 0")
        _check(self.stream_lookahead_s >= 0, "engine.stream_lookahead_s", "a number of seconds >= 0")
        _check(
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
            "engine.device",
            "'auto', 'cpu', 'cuda', 'cuda:N'",
        )
        _check(self.threads >= 0, "engine.threads", "an integer >= 0")


@dataclass(frozen=True)
class VadConfig:
    """webrtcvad segmentation; times in milliseconds / seconds as named."""

    frame_ms: int = 30  # webrtcvad accepts 10, 20 or 30 ms frames
    aggressiveness: int = 2  # 0 (keeps most) .. 3 (drops most non-speech)
    preroll_ms: int = 300  # audio kept before the first voiced frame
    hangover_ms: int = 600  # silence that ends an utterance
    start_frames: int = 3  # consecutive voiced frames that start an utterance
    min_utterance_s: float = 0.3
    max_utterance_s: float = 20.0

    def __post_init__(self) -> None:
        _check(self.frame_ms in (10, 20, 30), "vad.frame_ms", "10, 20, 30")
        _check(self.aggressiveness in (0, 1, 2, 3), "vad.aggressiveness", "0, 1, 2, 3")
        _check(self.preroll_ms >= 0, "vad.preroll_ms", "an integer of milliseconds >= 0")
        _check(self.hangover_ms >= self.frame_ms, "vad.hangover_ms", "an integer of milliseconds >= vad.frame_ms")
        _check(self.start_frames >= 1, "vad.start_frames", "an integer >= 1")
        _check(self.min_utterance_s > 0, "vad.min_utterance_s", "a number of seconds > 0")
        _check(self.max_utterance_s > self.min_utterance_s, "vad.max_utterance_s",
               "a number of seconds > vad.min_utterance_s")


@dataclass(frozen=True)
class SourceConfig:
    kind: str = "mic"  # mic | file | none (the API and WebSocket satellites work in every mode)
    device: str = ""  # mic: sounddevice name substring or index; empty: the default input
    path: str = ""  # file: a WAV file or a folder of them
    reopen_interval_s: float = 2.0  # mic: how often a missing/unplugged device is retried

    def __post_init__(self) -> None:
        _check(self.kind in ("mic", "file", "none"), "source.kind", "'mic', 'file', 'none'")
        _check(self.kind != "file" or bool(self.path), "source.path", "a WAV file or folder when source.kind = 'file'")
        _check(self.reopen_interval_s > 0, "source.reopen_interval_s", "a number > 0")


@dataclass(frozen=True)
class ApiConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    token: str = ""  # empty: generated into <data_dir>/api-token (0600) on first start
    max_upload_mb: float = 10.0
    max_json_kb: float = 64.0  # other request bodies (labels, prompts, job requests): refused past this
    # Host / Origin names the API answers to besides loopback and api.host (services/api/guard.py)
    allowed_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check(0 <= self.port <= 65535, "api.port", "0..65535 (0: any free port)")
        _check(self.max_upload_mb > 0, "api.max_upload_mb", "a number > 0")
        _check(self.max_json_kb > 0, "api.max_json_kb", "a number of KiB > 0")
        _check(all(h.strip() for h in self.allowed_hosts), "api.allowed_hosts", "a list of non-empty host names")
        object.__setattr__(self, "allowed_hosts", tuple(h.strip() for h in self.allowed_hosts))


@dataclass(frozen=True)
class StoreConfig:
    retention_days: float = 0.0  # 0: keep forever; labelled utterances are kept regardless
    retention_max_mb: float = 0.0  # 0: no size cap on audio + cached encoder outputs
    cache_encoder_outputs: bool = True  # what lets personalization train without re-running the encoder

    def __post_init__(self) -> None:
        _check(self.retention_days >= 0, "store.retention_days", "a number >= 0")
        _check(self.retention_max_mb >= 0, "store.retention_max_mb", "a number >= 0")


@dataclass(frozen=True)
class DaemonConfig:
    activation: str = "always"  # always | push_to_talk | wake_phrase
    wake_phrase: str = "hey assistant"
    listen_window_s: float = 8.0  # push_to_talk: how long a window opened through the API stays open
    followup_s: float = 8.0  # wake_phrase: after a reply, one more request within this time needs no phrase; 0: off
    queue_max: int = 8  # utterances waiting for the inference worker
    queue_policy: str = "drop_oldest"  # when full: drop_oldest | drop_newest (dropped ones stay stored, unanswered)
    shutdown_timeout_s: float = 15.0

    def __post_init__(self) -> None:
        _check(self.activation in ("always", "push_to_talk", "wake_phrase"), "daemon.activation",
               "'always', 'push_to_talk', 'wake_phrase'")
        _check(self.queue_max >= 1, "daemon.queue_max", "an integer >= 1")
        _check(self.queue_policy in ("drop_oldest", "drop_newest"), "daemon.queue_policy",
               "'drop_oldest', 'drop_newest'")
        _check(0 <= self.followup_s <= 120, "daemon.followup_s", "a number of seconds in [0, 120]")
        _check(self.listen_window_s > 0, "daemon.listen_window_s", "a number of seconds > 0")
        _check(self.shutdown_timeout_s > 0, "daemon.shutdown_timeout_s", "a number of seconds > 0")


@dataclass(frozen=True)
class ActionsConfig:
    """What the daemon does with the actions requests ask for (assistant/skills/actions.py)."""

    enabled: bool = True  # false: timers and alarms are not set (the reply says so), nothing rings
    ring: bool = True  # play the ring through the output device when a timer or alarm fires
    ring_seconds: float = 30.0  # how long it rings unless stopped ("stop the alarm", POST /v1/timers/stop)
    # Requests the assistant cannot do itself (lights, calls, messages, music, weather, reminders) go to:
    handoff: str = ""  # "" (none: the reply says it is not set up) | home_assistant | webhook
    handoff_url: str = ""  # Home Assistant's base URL (http://homeassistant.local:8123) or the webhook's URL
    handoff_token: str = ""  # Home Assistant: a long-lived access token; webhook: sent as a Bearer token if set
    handoff_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        _check(0 < self.ring_seconds <= 600, "actions.ring_seconds", "a number of seconds in (0, 600]")
        _check(self.handoff in ("", "home_assistant", "webhook"), "actions.handoff",
               "'' (none), 'home_assistant', 'webhook'")
        _check(not self.handoff or self.handoff_url.startswith(("http://", "https://")), "actions.handoff_url",
               "an http:// or https:// URL when actions.handoff is set")
        _check(0 < self.handoff_timeout_s <= 60, "actions.handoff_timeout_s", "a number of seconds in (0, 60]")


@dataclass(frozen=True)
class OutputConfig:
    """The output device: spoken replies and the ring (services/output.py)."""

    device: str = ""  # sounddevice output name substring or index; empty: the default output
    speak: bool = True  # say the replies to microphone turns aloud
    voice: str = "espeak-ng:en-us"  # a voice spec (assistant/synth/voice_spec.py), e.g. "flite:slt"
    # Speech over a reply stops it and is the next turn; false: the microphone is not listened to while
    # a reply plays. Either way the reply's own echo is never taken for a request.
    barge_in: bool = True
    echo_share: float = 0.85  # a microphone window this much explained by the played reply is its echo

    def __post_init__(self) -> None:
        _check(0 < self.echo_share < 1, "output.echo_share", "a number in (0, 1)")
        if self.speak:
            from assistant.synth.voice_spec import SynthError, parse

            try:
                parse(self.voice)
            except SynthError as exc:
                raise ConfigError(f"config key output.voice is invalid: {exc.problem}",
                                  fix="e.g. voice = \"espeak-ng:en-us\" or \"flite:slt\"") from exc


@dataclass(frozen=True)
class WyomingConfig:
    """Home Assistant's Wyoming protocol server (services/wyoming_server.py)."""

    enabled: bool = False
    host: str = "127.0.0.1"  # loopback: Home Assistant on this machine; "0.0.0.0" to serve the LAN
    port: int = 10300  # the Wyoming convention for speech-to-text; 0: any free port
    tts: bool = True  # also offer the reply voice as a text-to-speech service

    def __post_init__(self) -> None:
        _check(0 <= self.port <= 65535, "wyoming.port", "0..65535 (0: any free port)")


VOICE_ROUTING = ("auto", "on", "off")


@dataclass(frozen=True)
class AlignmentConfig:
    """Personalized alignment of the bridge at idle time (see assistant/alignment/)."""

    enabled: bool = True
    method: str = "default"  # default | backprop | zo | embed | ctc
    idle_s: float = 300.0  # no speech and no API turns for this long before a job starts
    min_new_labels: int = 20  # labels added since the last job
    window: str = "00:00-24:00"  # local time range in which jobs may run, e.g. "01:00-06:00"
    heldout_share: float = 0.2  # labelled utterances kept out of training for the gate (stable by id)
    min_heldout: int = 10  # fewer held-out utterances: no gate decision, the job is rejected
    min_improvement: float = 0.05  # relative user-WER cut the candidate must reach (0.05 = 5 %)
    generic_tolerance: float = 0.02  # allowed relative rise of the generic regression WER
    max_steps: int = 0  # 0: the method's own (ctc 600 or 200 with a personal top, others 200; trainers.STEP_DEFAULTS)
    learning_rate: float = 0.0  # 0: the method's own (ctc 3e-3 or 2e-4 with a personal top, others 1e-3)
    batch_size: int = 16
    personal_head: bool = True  # ctc bridges: grow and train a personal CTC head + adapter (bench/RESULTS.md)
    # with a personal head on a Whisper encoder: also train a copy of the encoder's top (its last layers and
    # our CTC module), which hears the user's voice where a head on its output cannot (bench/RESULTS.md,
    # "A personal top"); a job then takes minutes, not seconds, on a 2-core CPU
    personal_top: bool = True
    # > 0: the top's Whisper layers stay the encoder's own (shared) and the job trains a low-rank (LoRA) update
    # of this rank on each of their weights: no gradient or optimizer state for the pretrained weights, and a
    # version holds the update only; 0: the job trains a full copy of them (28 MB per version)
    top_rank: int = 0
    adapter_dim: int = 256  # width of that residual adapter on the encoder frames (0: head only)
    adapter_kernel: int = 9  # frames (odd) the adapter sees around each frame: a far voice needs context
    adapter_dropout: float = 0.3  # on the adapter's hidden units while training: 100 utterances overfit
    parent_lr_scale: float = 0.1  # learning-rate factor for the weights the active bridge already had (0: frozen)
    anchor_weight: float = 0.01  # pull toward the active bridge's weights, against forgetting
    replay_share: float = 0.25  # share of each batch from the bundle's generic replay set (0: none)
    # Memory of a job (an 8 GB board with a 0.5B LLM needs both; the demo needs neither):
    micro_batch_size: int = 0  # run each batch in parts of this many utterances (0: whole batch at once)
    # recompute the LLM's layers in backward (backprop methods): on a GPU, a batch of 16 through a 0.5B LLM
    # needs +1.7 GB with it against +5.5 GB without, for 3 % more time (bench/RESULTS.md, "On a CUDA GPU")
    gradient_checkpointing: bool = True
    # joint decoding favours the user's own words (labels' words the bundle's generic speech never uses:
    # names, places) by this much per character; 0: no personal lexicon (bench/RESULTS.md)
    lexicon_bonus: float = 0.0
    # after decoding, a stretch of the transcript that the CTC head hears as one of the user's own words
    # becomes that word: when the word's CTC log-likelihood beats the stretch's by more than
    # lexicon_spot_margin nats (engine/spotting.py). Negative: the user's words are preferred by that much,
    # a prior for the names they say (flite slt: names right 0.34 at 0 -> 0.58 at -15, generic speech
    # unchanged; bench/RESULTS.md "Personalization on the shipped bundle")
    lexicon_spotting: bool = True
    # the serving bridge spots the words of every label at once, before any training ("call leocadia" is
    # heard right as soon as a prompt or a correction names her); needs the bundle's vocabulary
    spot_user_words: bool = True
    lexicon_spot_margin: float = -15.0
    # a personal head serves only utterances in the user's voice, other speakers get the parent's path:
    # "on" always, "off" never, "auto": the gate scores the candidate both ways and keeps the better one that
    # passes (a far voice needs routing to keep generic speech; a near one loses a little with it)
    voice_routing: str = "auto"

    def __post_init__(self) -> None:
        _check(self.micro_batch_size >= 0, "alignment.micro_batch_size", "an integer >= 0 (0: the whole batch)")
        _check(self.voice_routing in VOICE_ROUTING, "alignment.voice_routing",
               "'auto', 'on' or 'off' (true / false read as 'on' / 'off')")
        _check(self.lexicon_bonus >= 0, "alignment.lexicon_bonus", "a number >= 0 (0: no decoding bias)")
        _check(math.isfinite(self.lexicon_spot_margin) and abs(self.lexicon_spot_margin) <= 100,
               "alignment.lexicon_spot_margin", "a number of nats between -100 and 100")
        _check(self.adapter_dim >= 0, "alignment.adapter_dim", "an integer >= 0 (0: head only)")
        _check(self.personal_head or not self.personal_top, "alignment.personal_top",
               "false while alignment.personal_head is false (the top feeds the personal head)")
        _check(self.top_rank >= 0, "alignment.top_rank", "an integer >= 0 (0: train a full copy of the top)")
        _check(self.parent_lr_scale >= 0, "alignment.parent_lr_scale", "a number >= 0 (0: frozen)")
        _check(self.anchor_weight >= 0, "alignment.anchor_weight", "a number >= 0")
        _check(0 <= self.replay_share < 1, "alignment.replay_share", "a fraction in [0, 1)")
        _check(self.method in METHODS, "alignment.method", ", ".join(repr(m) for m in METHODS))
        _check(self.idle_s >= 0, "alignment.idle_s", "a number of seconds >= 0")
        _check(self.min_new_labels >= 0, "alignment.min_new_labels", "an integer >= 0")
        _check(_valid_window(self.window), "alignment.window", "'HH:MM-HH:MM' (24 h clock; may wrap midnight)")
        _check(0 < self.heldout_share < 1, "alignment.heldout_share", "a fraction between 0 and 1")
        _check(self.min_heldout >= 1, "alignment.min_heldout", "an integer >= 1")
        _check(self.min_improvement >= 0, "alignment.min_improvement", "a fraction >= 0")
        _check(self.generic_tolerance >= 0, "alignment.generic_tolerance", "a fraction >= 0")
        _check(self.max_steps >= 0, "alignment.max_steps", "an integer >= 0 (0: the method's default)")
        _check(self.batch_size >= 1, "alignment.batch_size", "an integer >= 1")
        _check(self.learning_rate >= 0, "alignment.learning_rate", "a number >= 0 (0: the method's default)")
        _check(self.adapter_kernel >= 1 and self.adapter_kernel % 2 == 1, "alignment.adapter_kernel",
               "an odd number of frames >= 1 (1: the adapter sees each frame alone)")
        _check(0 <= self.adapter_dropout < 1, "alignment.adapter_dropout", "a fraction in [0, 1)")


def _valid_window(window: str) -> bool:
    try:
        a, b = window.split("-")
        return all(0 <= int(h) <= 24 and 0 <= int(m) < 60 for h, m in (x.split(":") for x in (a, b)))
    except ValueError:
        return False


@dataclass(frozen=True)
class Config:
    data_dir: str = ""  # empty: $ASSISTANT_DATA_DIR or $XDG_DATA_HOME/assistant
    audio: AudioConfig = field(default_factory=AudioConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    actions: ActionsConfig = field(default_factory=ActionsConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    wyoming: WyomingConfig = field(default_factory=WyomingConfig)
    alignment: AlignmentConfig = field(default_factory=AlignmentConfig)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser() if self.data_dir else default_data_dir()

    def bundle_path(self) -> Path:
        """The bundle to serve: configured, else the shipped one, else the tiny dev bundle."""
        if self.engine.bundle:
            return Path(self.engine.bundle).expanduser()
        demo = demo_bundle_dir()
        if (demo / "manifest.json").is_file():
            return demo
        return self.data_path / "bundles" / "tiny"


def _check(ok: bool, key: str, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"config key {key} is invalid; allowed: {allowed}")


def config_candidates() -> list[Path]:
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    env = os.environ.get("ASSISTANT_CONFIG")
    return ([Path(env)] if env else []) + [Path("/etc/assistant/config.toml"), Path(xdg) / "assistant" / "config.toml"]


def load_config(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Config:
    """Load and validate the config; ``overrides`` use dotted keys: ``{"engine.bundle": "..."}``."""
    data: dict[str, Any] = {}
    env = os.environ.get("ASSISTANT_CONFIG")
    if not path and env:
        path = env  # named explicitly: a missing file is an error, not a fall-through
    src: Path | None = Path(path) if path else next((p for p in config_candidates() if p.is_file()), None)
    if src is not None:
        try:
            data = tomllib.loads(src.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {src} does not exist", fix="create it or drop --config") from exc
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {src} is not valid TOML: {exc}") from exc
    for dotted, value in overrides.items():
        if value is None:
            continue
        *parents, leaf = dotted.split(".")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    alignment = data.get("alignment")
    if isinstance(alignment, dict) and isinstance(alignment.get("voice_routing"), bool):  # true/false: "on"/"off"
        data["alignment"] = {**alignment, "voice_routing": "on" if alignment["voice_routing"] else "off"}
    return from_dict(Config, data, error=ConfigError, noun="config key")


def with_engine(config: Config, **changes: Any) -> Config:
    return replace(config, engine=replace(config.engine, **changes))
