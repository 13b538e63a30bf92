from study_app.cli import main

main()
