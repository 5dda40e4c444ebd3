"""The local HTTP API and operator console (not built yet); only this package imports FastAPI."""
