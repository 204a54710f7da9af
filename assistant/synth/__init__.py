"""The synthetic speakers world: voice specs, request/reply text, and cached TTS corpora.

Used to train the small demo ASR-LLM on espeak-ng voices and to measure personalization on
voices (flite, festival, sox-warped espeak) and names the model never heard.

- ``voice_spec``: ``VoiceSpec`` / ``parse`` (the ``ENGINE:VOICE[+VARIANT][,rate=N]...`` strings)
- ``voices``: ``check_engine``, ``check_voice``, ``synthesize``
- ``voices_sets``: ``TRAIN_VOICES``, ``HELDOUT_VOICES``, ``NEW_USER_EXAMPLES``, ``train_voice_for``
- ``text``: ``normalize_text``, ``Utterance``, ``base_sentences``, ``personal_sentences``, ...
- ``corpus``: ``generate``, ``read_manifest`` and the CLI (``python -m assistant.synth.corpus``)
"""

from assistant.synth.voice_spec import SynthError, VoiceSpec, parse

__all__ = ["SynthError", "VoiceSpec", "parse"]
