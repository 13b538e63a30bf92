"""Study config + feature bundle -> randomized, balanced, blinded study package.

Light: never imports torch. The schemas of the files it reads and writes are in
``artifact_schemas``.
"""
