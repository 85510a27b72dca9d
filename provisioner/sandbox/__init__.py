"""The GitLab sandbox: an embedded GitLab-compatible server for offline rehearsal and tests."""
