from stimuli_builder.cli import main

main()
