"""Refiners turn a card's source facts into a concise description, category and weight.

``offline`` is the deterministic default; ``vlm`` asks a (vision) language model through
litellm. Neither is imported here, so importing the package costs nothing.
"""
