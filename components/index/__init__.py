"""Retrieval index: sparse BM25 (lexical.py) + chromadb vectors (vectors.py), kept in step by card_index.py;
shipped.py holds the starter catalog's precomputed vectors (a new catalog's index embeds nothing)."""
