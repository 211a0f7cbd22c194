"""Delivery targets, one per ``kind`` (``registry.MODULES``): ``maildir``, ``smtp`` and the
``ews`` and ``graph`` packages, each behind ``consumers.target.DeliveryTarget``.

How mailferry reaches Exchange (connections, tokens, error tables, the directory) is not
here but in ``mailferry.exchange``, because the stream app resolves recipients through it
too; these packages hold only what writing a message needs.
"""
