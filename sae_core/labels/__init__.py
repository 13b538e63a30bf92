"""Labelling features: the labelers (``labelers``: descriptors, CLAP vocabulary, manual;
``llm``: a multimodal LM) and the ``label`` stage that runs and scores them (``stage``)."""
