"""The Avro schemas of eventflow's events, one ``<event type>.v<N>.avsc`` file per version.

Installed, this folder is the package ``eventflow.schemas``; the codec reads it through
``importlib.resources`` so the schemas always come from the installed package.
"""
