"""The model registry: registered models, their versions, stages and aliases, as events.

Every change is a ``registered_model.*`` or ``model_version.*`` event keyed by the model's
name; setting an alias (``model_version.alias_set``) is the promotion the deployer acts on.
The projector builds the views (``eventflow.views.tables``); ``api`` serves MLflow's REST
paths over them, for the MLflow client, the SDK and the CLI alike.
"""
