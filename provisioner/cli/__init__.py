"""The runnerctl command line: thin Typer commands over the domain packages."""
