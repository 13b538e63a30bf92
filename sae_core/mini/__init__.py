"""Small models trained on the synthetic corpus: a codec, a MusicGen and a CLAP that have learned music."""
