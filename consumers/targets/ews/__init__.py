"""The EWS target: ``target`` (CreateItem from MIME), ``items`` (the received-item class),
``marker`` (finding a delivery again), ``stream`` (CreateItem with a streamed body).
Its connection, credentials and error table are in ``mailferry.exchange.ews``."""
