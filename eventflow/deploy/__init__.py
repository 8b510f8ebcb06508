"""Deployment by promotion: a stable address in front of ``eventflow models serve``
backends, rolled to whichever version an alias points at (driven by consumers/deployer.py)."""
