"""``mailferry migrate``: existing fetchmail and getmail setups as a mailferry config.

- ``model``: what a migration found (sources, domains, secrets to set, what was left out).
- ``fetchmailrc``: fetchmail's run-control language.
- ``getmailrc``: getmail6's INI files.
- ``render``: the mailferry TOML, with what was not carried over as comments.
"""
