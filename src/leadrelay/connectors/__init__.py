"""Built-in connectors. Each registers through the ``leadrelay.connectors`` entry points."""
