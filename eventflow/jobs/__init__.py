"""Jobs: a project to run and when — a cron schedule and/or events that trigger it (issue 17)."""
