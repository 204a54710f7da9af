"""Pretrained models from weight packages: sources (sources.py), CTranslate2 reading (ct2.py) and the
one-time assembly into the data directory (assemble.py)."""
