"""The subscribers that run as services: each one decodes, applies, records its offset."""
