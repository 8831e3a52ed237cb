"""Models written with the custom trainer API (:mod:`clients.custom_trainer`), as a user would."""
