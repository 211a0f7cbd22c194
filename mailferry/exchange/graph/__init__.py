"""Microsoft Graph over httpx: the client with its token (``client``), the error table (``errors``)."""
