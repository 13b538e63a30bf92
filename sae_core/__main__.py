from sae_core.cli import main

main()
