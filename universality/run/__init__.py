"""The run directory: its layout, files, catalog, analysis cache and lock."""
