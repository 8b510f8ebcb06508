"""The web server: MLflow's REST API 2.0 and eventflow's extensions, over the log and views."""
