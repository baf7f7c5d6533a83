"""Runners start the harness somewhere (a container, a subprocess) and hand back what it said."""
