"""The request path, one module per stage; :mod:`.pipeline` holds their order."""
