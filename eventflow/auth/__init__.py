"""Who may do what: users, tokens, permissions, and the middleware that asks.

Off by default on loopback (``eventflow server`` alone is one person's tool); on with
``eventflow server --auth`` (``EVENTFLOW_AUTH=true``), required for any other bind address.

- **Users and tokens** authenticate as MLflow's clients do: HTTP Basic
  (``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``) or ``Authorization: Bearer <token>``
  (``MLFLOW_TRACKING_TOKEN``). A token has scopes (read, write, promote, admin) and may
  expire. Secrets are kept only as slow salted hashes (:mod:`eventflow.auth.passwords`),
  off the log (:data:`eventflow.auth.tables.credentials`).
- **Permissions** are MLflow's: READ, EDIT, MANAGE or NO_PERMISSIONS per experiment and
  per registered model, a configurable default, MANAGE for the creator, all for admins
  (:mod:`eventflow.auth.permissions`); each route says what it needs
  (:mod:`eventflow.auth.rules`).
- **On the log**: users, token grants and permission changes are ``user.*``, ``token.*``
  and ``permission.*`` events, so the audit shows who granted what; the projector builds
  the ``auth_*`` views from them.
"""
