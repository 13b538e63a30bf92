"""The ``sae-core`` commands, one module per group; ``sae_core.cli`` assembles them.

A command parses its options, builds its stage's config dataclass, calls the stage's
one library function and prints the result. Checks live in the configs (which name
fields); ``_common.reporting`` turns a field into its flag for the terminal.
"""
