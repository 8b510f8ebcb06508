"""The SQL views: the tracking database, built from the log by the projector."""
