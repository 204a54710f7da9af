"""The alignment methods ``[alignment] method`` may name, in one place the config can import without torch.

``alignment.trainers`` builds a recipe for each (``make_recipe``); "default" stands for the best one the
bridge allows (``trainers.resolve_method``).
"""

METHODS = ("default", "backprop", "zo", "embed", "embed+backprop", "ctc")
