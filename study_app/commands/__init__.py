"""The ``study-app`` commands, registered on the app by ``create_app`` (so ``flask --app
study_app`` has them too): ``study`` (import, serve, lifecycle, status, export, admin),
``participants`` (idle sessions, bots, deletion) and ``common``; Prolific's command is in
``study_app.prolific.commands``."""
