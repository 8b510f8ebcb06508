"""The producer SDK: the fluent API (``import eventflow``), the sender and the stores."""
