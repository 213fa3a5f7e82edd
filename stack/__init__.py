"""The embedded stack: install, start, supervise, drain and stop every process by pid."""
