"""runnerctl: stand up self-hosted GitLab Runners, prove they work, keep them healthy."""

__version__ = "0.1.0"
