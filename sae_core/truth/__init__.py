"""Scoring a run against a corpus whose concepts are known: which layer's features detect
them (``concepts``), which feature is matched to a value and whether labelers and CLAP
name it (``match``), and whether steering a matched feature puts its concept into the
music (``steering``)."""
