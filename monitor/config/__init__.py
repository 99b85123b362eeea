"""``monitor.yaml``: the one file that says what the agent watches and how.

The file is validated on load, all of it at once, and every problem is reported with the
file, the dotted key and what to write instead::

    monitor.yaml: windows.size: "sixty" is not a duration; use a number of seconds or
    500ms, 60s, 5m, 1h

Unknown keys are errors, with a "did you mean" suggestion, because a misspelt optional
key silently keeps its default. Secrets never live in the file: it names the environment
variables that hold them (``sasl_password_env``, ``otlp_headers_env``), so the effective
configuration can be printed and logged as it is. Paths written in the file are relative
to the file's directory; the defaults are relative to the working directory.

One module per job; import each name from the module that defines it:

* ``errors``: :class:`ConfigError` (file, key, fix) and how values are shown in messages;
* ``durations``, ``rules``: what every section follows (the :class:`Section` base with
  unknown keys forbidden, ``fail``, ``Duration``, environment variable names);
* one module per top-level section: ``source``, ``record``, ``schema``, ``windows``,
  ``drift``, ``quality``, ``exporter``, ``reports``, ``state``, and ``rollback``
  (``alerts``, ``policies``, ``actions``, ``audit``);
* ``model``: :class:`MonitorConfig`, the root, and the checks that span sections or need
  the reference profile (:meth:`MonitorConfig.check_against_profile`);
* ``messages``: pydantic's errors turned into messages that name the key and the fix;
* ``loader``: :func:`load_config` (a file) and :func:`parse_config` (a mapping).

A new section is a new module here: a ``Section`` subclass that raises ``fail(key,
message with the fix)``, imported by ``model`` only, plus one field on
:class:`MonitorConfig` (and, for paths, an entry in its ``_PATH_KEYS``), and its keys in
docs/configuration.md. A section module imports ``rules``, ``errors`` and ``durations``,
never ``model``, another section or ``monitor.*`` outside this package, so the
configuration has no import cycle. This ``__init__`` re-exports nothing, so importing
one section does not load the others.
"""
