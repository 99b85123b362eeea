"""What each ``driftline`` command does; ``monitor/cli.py`` parses the command line and
dispatches here. Each module imports its heavy dependencies inside the command, so
``driftline --help`` and the agent's start-up stay light."""
