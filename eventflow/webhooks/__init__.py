"""Webhooks: subscriptions to lifecycle events, delivered as signed HTTP POSTs.

The pieces, each in its own module:

- ``settings``: the operator's knobs (retry window, timeouts, allowed networks), from the environment;
- ``tables``: the dispatcher's state in the views database (subscriptions as applied from
  the log, signing secrets — never on the log —, deliveries and every attempt);
- ``filters``: which events a subscription wants (type patterns, experiment, model, condition);
- ``signing``: Standard Webhooks signatures and ``whsec_`` secrets;
- ``guard``: the SSRF guard (which addresses a delivery may connect to);
- ``sender``: works through pending deliveries: claim, POST, record, retry or give up;
- ``service``: what the REST API, the CLI and the SDK ask for (create, list, rotate, redeliver…).

The consumer that turns events into pending deliveries is ``consumers/webhooks.py``.
"""
