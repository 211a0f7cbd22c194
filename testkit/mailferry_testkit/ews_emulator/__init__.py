"""An EWS *emulator* for tests and demos: not Exchange, a strict stand-in driven by exchangelib."""
