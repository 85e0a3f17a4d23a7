"""What users run: the command line, the web UI and the demo."""
