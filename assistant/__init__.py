"""On-device personal voice assistant: speech encoder -> trainable bridge -> causal LLM.

Importing this package starts nothing and imports no heavy library (torch, transformers):
the command line imports it to print help.
"""

__version__ = "0.1.0"
