"""Feature statistics, filters and each kept feature's example clips (``sae-core features``)."""
