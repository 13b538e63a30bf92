"""Running a study on Prolific: ``client`` (Prolific's API), ``study`` (the study form,
creating, publishing and syncing submissions), ``pay`` (approvals, screen-out payments,
bonuses) and ``commands`` (``study-app prolific``)."""
