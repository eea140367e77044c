"""Tools that build the artefacts the app ships (run from the repository root, e.g.
``python -m tools.train_tagger``); the app never imports them."""
