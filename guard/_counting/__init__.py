"""How a key's hits are counted in its rate-limit windows: in process or on Redis."""
