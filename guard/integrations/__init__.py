"""The guard beside other tools: OpenAPI documents and docs pages, the pytest plugin."""
