"""The embedded stack: install, start, supervise and stop every process by pid."""
