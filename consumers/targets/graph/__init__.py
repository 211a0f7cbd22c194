"""The Microsoft Graph target: ``target`` (importMime or JSON create) and ``json_message``
(MIME to a Graph message). Its client, token and error table are in ``mailferry.exchange.graph``."""
