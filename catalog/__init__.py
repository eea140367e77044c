"""Adapter cards: schema, importers, storage and the shipped starter catalog. Never imports gradio."""
