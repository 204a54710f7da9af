"""The project's one sample rate, in a module with no imports so that any module can take it.

Audio in is resampled to it (assistant/audio.py re-exports it), the encoders read it, the daemon's
sources deliver it and replies are synthesized at it.
"""

TARGET_RATE_HZ = 16000
