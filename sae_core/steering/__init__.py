"""Steered generation (``generate``: ``sae-core steer``) and its evaluation by CLAP,
without listeners (``clap_eval``: ``sae-core steering-eval``)."""
