"""The delivery stage: the worker, retry tiers, dead-letter topic and ledger here; the
targets it writes to (EWS, Graph, SMTP, Maildir) in ``targets/``, one module or package each."""
