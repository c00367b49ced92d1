"""What a run shows: tables (one renderer for terminal and Markdown), figures and the report."""
