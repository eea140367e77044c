"""Retrieval index: sparse BM25 (lexical.py) + chromadb vectors (vectors.py), kept in step by card_index.py."""
